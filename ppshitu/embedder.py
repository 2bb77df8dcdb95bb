"""The one embedding path: image -> checks -> (main object) -> embedding.

Every part of ppshitu that turns images into vectors does it through an Embedder: gallery building
(gallery/builder.py), the recognition system (system.py: its crops and queries), the service
(serving/service.py: images added through the API, search queries) and the photo-library tools
(library/common.py).

    emb = Embedder.from_config(cfg, rec, det=None)   # Global's image limits, IndexProcess's batching
    out = emb.embed_files(paths)                     # Embedded: vectors, index, boxes, unreadable, refused
    out = emb.embed_images([(name, rgb), ...])       # the same for decoded images (the service's uploads)
    vector, box, rgb = emb.embed_file(path)          # one query file (library search / similarity)
    vectors, box = emb.embed_query(rgb)              # one decoded query (the service's /search)
    vectors = emb.embed_crops([rgb, ...])            # crops as they are, one batch (the system's candidates)

The steps, each one method:
- read: `read_image` (ppshitu/utils/image.py, the one image opener) under `max_pixels`. A gallery image
  embedded whole (no detector) is read at a reduced scale when it is a large JPEG (`reduced_decode`,
  never below the model's input: `rec.preprocess.decode_side`); with a detector, in full (its crops
  need the pixels); a query file always in full (the tools show it);
- checks: an image with a side under `min_side` px is refused (ImageTooSmallError); a gallery image
  (or its main object) without detail (blank, flat colour: utils.image.is_uniform under
  `min_crop_std`; 0 turns it off) is refused (UniformImageError), and so is each of the two images
  library/similarity.py compares (`embed_file(gallery_checks=True)`: no verdict on what a gallery would
  refuse); the system instead answers such a crop "unknown" (`is_uniform`);
- main object (`detect`, default: when the Embedder has a detector): the detector's best box and its
  crop; the whole image when it finds none (or a box under 2 px);
- batching: files are decoded (and pre-processed) in `num_workers` threads while the model runs the
  previous batch of `batch_size` (`prefetch`, which system.predict_paths uses too);
- the runtime: `rec.preprocess` (thread-safe) and `rec.predict_batch` (float32 [N, D], L2-normalised);
  with RecPreProcess.flip_average each vector is the normalised mean of the image's and its mirror image's
  (`run`: twice the model time; the gallery's fingerprint records it, so the two never mix).
"""
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .utils.image import MIN_IMAGE_SIDE, ImageReadError, check_recognisable, is_uniform, read_image

log = logging.getLogger("ppshitu.gallery")


class UniformImageError(ImageReadError):
    """A gallery image (or its main object) with no detail to recognise."""


@dataclass
class Embedded:
    vectors: np.ndarray                               # float32 [m, D], one per usable image
    index: list = field(default_factory=list)         # position in the input of each vector
    boxes: list = field(default_factory=list)         # main-object box per vector, None for the whole image
    unreadable: list = field(default_factory=list)    # the inputs refused (paths, or names), in order
    refused: dict = field(default_factory=dict)       # position -> why it was refused

    def refuse(self, position, name, error):
        self.unreadable.append(name)
        self.refused[position] = str(error)


def skipped_summary(out, total, first=5):
    """"N of M images could not be read and were skipped: NAME (why); ..." naming the first `first` of an
    Embedded's refused inputs (the per-file warnings scroll by under a progress bar)."""
    from .utils.text import printable

    named = [printable(why if str(name) in why else f"{name}: {why}")
             for name, (_, why) in zip(out.unreadable, sorted(out.refused.items())[:first])]
    more = f"; and {len(out.unreadable) - first} more" if len(out.unreadable) > first else ""
    return f"{len(out.unreadable)} of {total} images could not be read and were skipped: {'; '.join(named)}{more}"


def image_options(cfg):
    """The Embedder's image and batching options from a config: Global's reader limits and
    reduced_decode, IndexProcess's min_crop_std, batch_size and num_workers."""
    g, ip = cfg.get("Global") or {}, cfg.get("IndexProcess") or {}
    return {"max_pixels": g.get("max_image_pixels"), "min_side": g.get("min_image_side", MIN_IMAGE_SIDE),
            "min_crop_std": ip.get("min_crop_std", 0.0), "reduced_decode": g.get("reduced_decode", True),
            "batch_size": ip.get("batch_size", 32), "num_workers": ip.get("num_workers", 2)}


def read_checked(path, max_pixels=None, min_side=MIN_IMAGE_SIDE, decode_side=None):
    """RGB uint8 of the image file `path` (read_image: regular files, the pixel limit; `decode_side`: a
    reduced decode), refused when a side is under `min_side` px; ImageReadError naming it otherwise."""
    return check_recognisable(read_image(path, max_pixels, decode_side), str(path), min_side)


def prefetch(items, load, batch_size, num_workers=2, ahead=1):
    """Yield (start, [load(item) for each item of the batch]) batch by batch, in order; `load` runs in
    `num_workers` threads, `ahead` batches ahead of the one being used (the next images decode while
    the model runs this batch)."""
    batch_size = max(1, int(batch_size))
    starts = iter(range(0, len(items), batch_size))
    with ThreadPoolExecutor(max(1, int(num_workers))) as pool:
        pending = deque()

        def queue_next():
            start = next(starts, None)
            if start is not None:
                pending.append((start, [pool.submit(load, item) for item in items[start:start + batch_size]]))
        for _ in range(max(1, int(ahead))):
            queue_next()
        while pending:
            start, futures = pending.popleft()
            loaded = [f.result() for f in futures]
            queue_next()  # before the caller runs the model on this batch
            yield start, loaded


class Embedder:
    """A recognition predictor (`rec`: preprocess + predict_batch, embedding_size), an optional
    main-object detector (`det`: predict(rgb) -> boxes best first) and the image options (module
    docstring). Stateless besides them: one Embedder may serve any number of calls, on the thread
    that owns its predictors."""

    def __init__(self, rec, det=None, max_pixels=None, min_side=MIN_IMAGE_SIDE, min_crop_std=0.0,
                 reduced_decode=True, batch_size=32, num_workers=2):
        self.rec, self.det = rec, det
        self.max_pixels, self.min_side, self.min_crop_std = max_pixels, min_side, min_crop_std
        self.reduced_decode = bool(reduced_decode)
        self.batch_size, self.num_workers = max(1, int(batch_size)), max(1, int(num_workers))

    @classmethod
    def from_config(cls, cfg, rec, det=None):
        """With the config's image and batching options (image_options)."""
        return cls(rec, det, **image_options(cfg))

    @property
    def embedding_size(self):
        return self.rec.embedding_size

    @property
    def decode_side(self):
        """The shorter side a whole-image read may be reduced to (None: full decodes); a predictor whose
        preprocessing does not say what it needs gets full decodes."""
        return getattr(self.rec.preprocess, "decode_side", None) if self.reduced_decode else None

    # ------------------------------------------------------------------ steps
    def read(self, path, decode_side=None):
        return read_checked(path, self.max_pixels, self.min_side, decode_side)

    def check(self, rgb, where="image"):
        """An RGB image of a recognisable size (ImageTooSmallError naming `where` otherwise)."""
        return check_recognisable(rgb, where, self.min_side)

    def is_uniform(self, rgb):
        return is_uniform(rgb, self.min_crop_std)

    def refuse_uniform(self, rgb, where):
        if self.is_uniform(rgb):
            raise UniformImageError(f"{where}: no detail to recognise (a blank or flat-colour image: pixel std "
                                    f"below IndexProcess.min_crop_std={self.min_crop_std})")
        return rgb

    def main_object(self, rgb):
        """The detector's best box and its crop, or (None, the whole image) when it finds nothing."""
        boxes = self.det.predict(rgb)
        if not len(boxes):
            return None, rgb
        x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[0][:4])
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None, rgb
        return [float(v) for v in boxes[0][:4]], rgb[y1:y2, x1:x2]

    def _detect(self, detect):
        return self.det is not None and (detect is None or bool(detect))

    def _subject(self, rgb, detect):
        """(box, what is embedded): the main object with `detect`, else the whole image."""
        return self.main_object(rgb) if detect else (None, rgb)

    def prepare(self, rgb):
        return self.rec.preprocess(rgb)

    @property
    def flip_average(self):
        """RecPreProcess.flip_average (set on the predictor by infer/factory.py): every vector is the mean of the
        image's and its mirror image's, so gallery and queries alike (the fingerprint says so: model_id.py)."""
        return bool(getattr(self.rec, "flip_average", False))

    def run(self, prepared):
        """Pre-processed inputs -> float32 [N, D] (one predict_batch; two with flip_average)."""
        batch = np.stack(prepared)
        vectors = np.asarray(self.rec.predict_batch(batch), np.float32)
        if self.flip_average:  # CHW: mirroring the last axis = mirroring the image before resize/crop/normalise
            vectors = vectors + np.asarray(self.rec.predict_batch(np.ascontiguousarray(batch[..., ::-1])), np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def embed_crops(self, crops):
        """RGB crops, as they are (no checks) -> float32 [N, D], one batch."""
        return self.run([self.prepare(c) for c in crops])

    def _empty(self):
        return Embedded(np.zeros((0, self.embedding_size), np.float32))

    # ------------------------------------------------------------------ pipelines
    def embed_files(self, paths, desc="embedding", detect=None, warn=True):
        """Embed image files (their main objects with `detect`), `batch_size` at a time, decoding the next
        batch in worker threads while the model runs; a file refused (unreadable, past the pixel limit,
        too small, without detail) is skipped and listed in `unreadable` / `refused`, with a warning each
        and, at the end, their count naming the first few (`warn` False: the caller reports them)."""
        from tqdm import tqdm

        detect = self._detect(detect)
        side = None if detect else self.decode_side
        paths = [os.fspath(p) for p in paths]

        def load(path):  # a worker thread; the detector runs on the caller's
            try:
                rgb = self.read(path, side)
                return rgb if detect else self.prepare(self.refuse_uniform(rgb, path))
            except ImageReadError as e:
                return e

        out, chunks = self._empty(), []
        with tqdm(total=len(paths), desc=desc, unit="img") as bar:
            for start, loaded in prefetch(paths, load, self.batch_size, self.num_workers):
                inputs = []
                for pos, item in enumerate(loaded, start):
                    box = None
                    if detect and not isinstance(item, ImageReadError):
                        box, item = self._prepared_subject(item, paths[pos])
                    if isinstance(item, ImageReadError):
                        if warn:
                            log.warning("skipped unreadable image: %s", item)
                        out.refuse(pos, paths[pos], item)
                        continue
                    inputs.append(item)
                    out.index.append(pos)
                    out.boxes.append(box)
                if inputs:
                    chunks.append(self.run(inputs))
                bar.update(len(loaded))
        if chunks:
            out.vectors = np.concatenate(chunks)
        if out.unreadable and warn:
            log.warning("%s", skipped_summary(out, len(paths)))
        return out

    def _prepared_subject(self, rgb, where):
        """(box, the main object pre-processed), or (None, UniformImageError) when it has no detail."""
        box, crop = self.main_object(rgb)
        try:
            return box, self.prepare(self.refuse_uniform(crop, where))
        except UniformImageError as e:
            return None, e

    def embed_images(self, images, detect=None):
        """[(name, rgb)] -> Embedded, the checks of embed_files, all in one batch (the service's uploads)."""
        detect = self._detect(detect)
        out, inputs = self._empty(), []
        for pos, (name, rgb) in enumerate(images):
            try:
                box, crop = self._subject(self.check(rgb, name), detect)
                inputs.append(self.prepare(self.refuse_uniform(crop, name)))
            except ImageReadError as e:
                out.refuse(pos, name, e)
                continue
            out.index.append(pos)
            out.boxes.append(box)
        if inputs:
            out.vectors = self.run(inputs)
        return out

    def embed_query(self, rgb, detect=None, where="image"):
        """(float32 [1, D], main-object box or None) of one decoded query image (its size checked; any
        detail: a query is searched whatever it shows)."""
        box, crop = self._subject(self.check(rgb, where), self._detect(detect))
        return self.embed_crops([crop]), box

    def embed_file(self, path, detect=None, gallery_checks=False):
        """(unit vector [D], main-object box or None, the RGB image read in full) of one query file;
        ImageReadError when it cannot be read or the model makes no usable vector of it. `gallery_checks`:
        the image (its main object) must also have the detail a gallery image needs (UniformImageError: a
        blank or flat image), as for two images compared with each other (library/similarity.py)."""
        rgb = self.read(path)
        box, crop = self._subject(rgb, self._detect(detect))
        if gallery_checks:
            self.refuse_uniform(crop, path)
        vec = self.embed_crops([crop])[0]
        norm = float(np.linalg.norm(vec))
        if not norm or not np.isfinite(vec).all():
            raise ImageReadError(f"{path}: the model made no usable embedding of it (a blank image?)")
        return vec / norm, box, rgb
