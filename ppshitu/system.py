"""RecognitionSystem: detector -> crops (+ the whole image) -> one embedding batch ->
gallery search -> threshold ("unknown") -> NMS -> results.

    system = RecognitionSystem.from_config("configs/inference/inference_general.yaml",
                                           overrides=["IndexProcess.index_dir=my_gallery"])
    results = system.predict("photo.jpg")   # or an RGB array: [{"bbox", "rec_docs", "rec_scores", ...}, ...]
    hits = system.search("photo.jpg", k=5)  # the whole image's nearest gallery items

Images are read, checked and embedded by `system.embedder` (ppshitu/embedder.py, the one embedding
path). Each result names its best matches with their gallery items: `topk` [{"label", "score", "id"}].

Decisions, and why they differ from PP-ShiTu's:
- The whole image is always recognised too, but it is only *reported* when no detected
  box was recognised. PP-ShiTu puts it into one NMS at IoU 0.05 with the detections, so a
  confident whole-image match wipes out every real object in the photo.
- A candidate whose best match fails `score_thres` is reported as "unknown" (with its
  nearest label in `nearest_docs`), never as the nearest label. For dist_type L2 the
  gallery returns distances, so "passes" means distance <= score_thres. from_config takes
  IndexProcess.score_thres when the config gives one, else the gallery's calibrated value
  (ppshitu/gallery/calibrate.py: chosen for a target precision), else 0.5; it prints which, once.
- NMS only merges boxes that name the same label (IoU > rec_nms_thresold), plus any two
  boxes that are clearly the same region (IoU > 0.5), keeping the better match.
- Images with a side under `min_image_side` (8 px) are refused (ImageTooSmallError): the 128-d
  demo model "recognised" a 1x1 image at cosine 0.88. A crop without detail (per-channel pixel
  std under `min_crop_std` on a 32x32 thumbnail: blank, all-black, flat colour) is "unknown"
  whatever its score (its `nearest_docs` and score are still reported, with `"uniform": true`):
  above the default threshold 0.5, the 128-d demo model matched all-black at 0.67, white 0.68,
  flat red 0.86; the EfficientNet-Lite0 one flat grey at 0.56 and flat red at 0.59. (Random
  noise still gets labels at ~0.6 from both: that is the model's calibration, not a rule's.)
  The constructor's default leaves this test off (0.0), for stand-in models that embed a mean
  colour; from_config uses IndexProcess.min_crop_std (default 1.0).
"""
import math
import os

import numpy as np

from .embedder import Embedder, prefetch
from .errors import ConfigError
from .infer import factory
from .utils.boxes import box_iou
from .utils.image import MIN_IMAGE_SIDE, as_rgb_uint8

UNKNOWN = "unknown"
SAME_REGION_IOU = 0.5


def _on_embedder(name, doc):
    """A RecognitionSystem attribute kept by its embedder (read and set through it)."""
    return property(lambda self: getattr(self.embedder, name), lambda self, v: setattr(self.embedder, name, v),
                    doc=doc)


class RecognitionSystem:
    def __init__(self, rec, gallery, det=None, return_k=5, score_thres=0.5, rec_nms_thresold=0.05,
                 min_crop_size=4, min_image_side=MIN_IMAGE_SIDE, min_crop_std=0.0, max_image_pixels=None,
                 query_expansion=0, qe_alpha=3.0, rerank="none", score="cosine"):
        if rec.embedding_size != gallery.embedding_size:
            raise ConfigError(f"the recognition model makes {rec.embedding_size}-d vectors but the gallery "
                              f"{gallery.index_dir} holds {gallery.embedding_size}-d ones")
        self.gallery, self.det = gallery, det
        self.return_k = _number(return_k, "IndexProcess.return_k", int, low=1)
        self.score_thres = _number(score_thres, "IndexProcess.score_thres", float)
        self.nms_thresh = _number(rec_nms_thresold, "Global.rec_nms_thresold", float)
        self.min_crop_size = _number(min_crop_size, "min_crop_size", int, low=1)
        # alpha-QE at search time (gallery/query_expansion.py): 0 is off
        self.query_expansion = _number(query_expansion, "IndexProcess.query_expansion", int, low=0)
        self.qe_alpha = _number(qe_alpha, "IndexProcess.qe_alpha", float, low=0)
        from .gallery.query_expansion import RERANK_METHODS

        if rerank not in RERANK_METHODS:
            raise ConfigError(f"IndexProcess.rerank must be one of {', '.join(RERANK_METHODS)}, got {rerank!r}")
        self.rerank = rerank
        from .gallery.scores import check_score

        self.score = check_score(score)  # what score_thres acts on (gallery/scores.py)
        # the detector finds every object; the embedder embeds the crops as they are (full decodes: crops)
        self.embedder = Embedder(
            rec, None, min_side=_number(min_image_side, "Global.min_image_side", int, low=1),
            min_crop_std=_number(min_crop_std, "IndexProcess.min_crop_std", float, low=0), reduced_decode=False,
            max_pixels=None if max_image_pixels is None else _number(max_image_pixels, "Global.max_image_pixels",
                                                                     int, low=1))

    # the embedder holds the recognition model and the image checks; the system's names for them
    rec = _on_embedder("rec", "the recognition predictor")
    min_image_side = _on_embedder("min_side", "Global.min_image_side: a shorter side refuses the image")
    min_crop_std = _on_embedder("min_crop_std", "IndexProcess.min_crop_std: a crop with less detail is unknown")
    max_image_pixels = _on_embedder("max_pixels", "Global.max_image_pixels for images read from files")

    @classmethod
    def from_config(cls, cfg, overrides=()):
        """From a PP-ShiTu inference config (Global, DetPreProcess, RecPreProcess, IndexProcess): a loaded one,
        or a YAML file's path, loaded with `overrides` (["IndexProcess.index_dir=g", ...], as -o takes them)
        and checked against the inference schema (ppshitu.api.load_inference_config)."""
        from .api import load_inference_config
        from .gallery.base import gallery_location, open_gallery
        from .gallery.errors import GalleryError
        from .gallery.model_id import model_fingerprint

        if isinstance(cfg, (str, os.PathLike)) or overrides:
            cfg = load_inference_config(cfg, overrides)
        g, idx = cfg["Global"], cfg["IndexProcess"]
        gallery_location(idx)  # a missing index_dir (faiss) or uri (milvus) fails before any model loads
        rec = factory.rec_predictor(cfg)
        # the weights' own fingerprint, not inference.yml's copy (new weights under an old yml)
        try:
            gallery = open_gallery(idx, model_fingerprint=model_fingerprint(rec), embedding_size=rec.embedding_size)
        except GalleryError:
            rec = _rec_of_gallery(cfg, rec)  # auto chose int8 for a gallery the fp32 model built: run fp32
            gallery = open_gallery(idx, model_fingerprint=model_fingerprint(rec), embedding_size=rec.embedding_size)
        if idx.get("ef_search") or idx.get("nprobe"):
            gallery.set_search_params(ef_search=idx.get("ef_search"), nprobe=idx.get("nprobe"))
        det = factory.det_predictor(cfg)
        from .gallery.calibrate import resolve_score_thres

        return cls(rec, gallery, det, return_k=idx.get("return_k", 5), score_thres=resolve_score_thres(idx, gallery),
                   rec_nms_thresold=g.get("rec_nms_thresold", 0.05),
                   min_image_side=g.get("min_image_side", MIN_IMAGE_SIDE), min_crop_std=idx.get("min_crop_std", 1.0),
                   max_image_pixels=g.get("max_image_pixels"), query_expansion=idx.get("query_expansion", 0),
                   qe_alpha=idx.get("qe_alpha", 3.0), rerank=idx.get("rerank", "none"), score=idx.get("score", "cosine"))

    # ------------------------------------------------------------------ API
    def predict(self, images):
        """One image -> its results; a list of images -> a list of results (one crop batch). An image is an
        RGB array or an image file's path (read with Global.max_image_pixels)."""
        single = isinstance(images, (np.ndarray, str, os.PathLike))
        images = [images] if single else list(images)
        images = [self._image(im, f"image {i}") for i, im in enumerate(images)]
        boxes = [self.detect(im) for im in images]
        out = self.recognize(images, boxes)
        return out[0] if single else out

    def search(self, image, k=5):
        """The `k` gallery items nearest to the whole image (an RGB array or a path), best first:
        [{"rank", "label", "score", "path", "id"}] (`path`: the item's gallery key). Scores as in predict:
        cosine for IP galleries (higher is closer), squared distance for L2."""
        vectors = self.embedder.embed_crops([self._image(image, "image")])
        labels, scores, ids = self.search_vectors(vectors, int(k))
        found = [(int(i), float(s), lab) for i, s, lab in zip(ids[0], scores[0], labels[0]) if i >= 0]
        paths = {r["id"]: r.get("path") for r in self.gallery.records([i for i, _, _ in found])} if found else {}
        return [{"rank": rank, "label": lab, "score": round(score, 6), "path": paths.get(i), "id": i}
                for rank, (i, score, lab) in enumerate(found, 1)]

    def _image(self, image, where):
        """An RGB uint8 array of a recognisable size, from an array or an image file's path."""
        if isinstance(image, (str, os.PathLike)):
            return self.embedder.read(image)
        return self.embedder.check(as_rgb_uint8(image, where), where)

    def predict_paths(self, paths, batch_size=1, num_workers=2, on_error=None, with_images=False):
        """Yield (path, results) in order (`with_images`: (path, results, rgb)); the next images are
        decoded (and pre-processed for the detector) in worker threads while the models run.
        Unreadable images (also: past the pixel limit, too small) are passed to `on_error(path, exc)`
        and skipped."""
        def load(path):
            try:
                rgb = self.embedder.read(path)
            except Exception as e:  # noqa: BLE001 - reported to the caller, never fatal
                return None, None, e
            return rgb, (self.det.preprocess(rgb) if self.det else None), None

        for start, batch in prefetch(paths, load, batch_size, num_workers, ahead=2):
            loaded = []
            for path, (rgb, det_in, err) in zip(paths[start:start + len(batch)], batch):
                if err is not None:
                    if on_error:
                        on_error(path, err)
                    continue
                loaded.append((path, rgb, det_in))
            if not loaded:
                continue
            boxes = [self.detect(rgb, det_in) for _, rgb, det_in in loaded]
            results = self.recognize([rgb for _, rgb, _ in loaded], boxes)
            if with_images:
                yield from ((path, res, rgb) for (path, rgb, _), res in zip(loaded, results))
            else:
                yield from ((path, res) for (path, _, _), res in zip(loaded, results))

    # ---------------------------------------------------------------- steps
    def detect(self, rgb, preprocessed=None):
        """Detected boxes [K, 5] (x1, y1, x2, y2, score), clipped; empty without a detector."""
        if self.det is None:
            return np.zeros((0, 5), np.float32)
        if preprocessed is None:
            return self.det.predict(rgb)
        from .infer.det import select_boxes
        chw, im_shape, scale_factor = preprocessed
        bbox, _ = self.det.run(chw[None], im_shape[None], scale_factor[None])
        return select_boxes(bbox, rgb.shape[0], rgb.shape[1], self.det.threshold, self.det.max_det_results)

    def recognize(self, images, boxes_per_image):
        """All crops of all images (each image's detections + the whole image) in one batch."""
        crops, owners = [], []
        for i, (rgb, boxes) in enumerate(zip(images, boxes_per_image)):
            h, w = rgb.shape[:2]
            cands = [(self._clip(b[:4], w, h), float(b[4]), "det") for b in boxes]
            cands = [c for c in cands if c[0] is not None]
            cands.append(([0, 0, w, h], None, "image"))
            for box, det_score, source in cands:
                x1, y1, x2, y2 = box
                crop = rgb[y1:y2, x1:x2]
                crops.append(crop)
                owners.append((i, box, det_score, source, self.embedder.is_uniform(crop)))
        vectors = self.embedder.embed_crops(crops)
        from .gallery.scores import neighbourhood_scores, search_k

        labels, scores, ids = self.search_vectors(vectors, search_k(self.score, self.return_k))
        norm = neighbourhood_scores(scores, self.gallery.higher_is_better) if self.score == "neighbourhood" else None
        k = self.return_k
        per_image = [[] for _ in images]
        for j, ((i, box, det_score, source, uniform), lab, sc, row_ids) in enumerate(zip(owners, labels, scores, ids)):
            per_image[i].append(self._decide(box, det_score, source, lab[:k], sc[:k], uniform, row_ids[:k],
                                             None if norm is None else norm[j]))
        return [self._select(cands) for cands in per_image]

    def expand(self, vectors):
        """Query vectors as searched: expanded by their gallery neighbours with IndexProcess.query_expansion."""
        if not self.query_expansion:
            return vectors
        from .gallery.query_expansion import expand_queries

        return expand_queries(self.gallery, vectors, self.query_expansion, self.qe_alpha)

    def search_vectors(self, vectors, k):
        """gallery.search with the query-time options: expanded queries, then the top candidates re-ranked
        (IndexProcess.rerank: csls; the scores stay the plain ones)."""
        vectors = self.expand(vectors)
        if self.rerank == "csls":
            from .gallery.query_expansion import rerank_csls

            return rerank_csls(self.gallery, vectors, k)
        return self.gallery.search(vectors, k)

    def passes(self, score):
        """Whether a score passes score_thres: a store score (cosine >=, L2 distance <=), or with
        IndexProcess.score neighbourhood the neighbourhood score (>=; NaN never passes)."""
        if self.score == "neighbourhood" or self.gallery.higher_is_better:
            return bool(score >= self.score_thres)
        return score <= self.score_thres

    def _decide(self, box, det_score, source, labels, scores, uniform=False, ids=None, norm=None):
        """One candidate's answer; `topk`: its matches with their gallery item ids; `norm`: its
        neighbourhood score (IndexProcess.score neighbourhood decides on it)."""
        ids = [None] * len(labels) if ids is None else ids
        nearest = labels[0] if len(labels) and labels[0] is not None else None
        best = float(scores[0]) if nearest is not None else float("nan")
        decided_on = best if norm is None else float(norm)
        known = nearest is not None and self.passes(decided_on) and not uniform
        extra = {} if norm is None else {"rec_neighbourhood": None if not math.isfinite(norm) else round(float(norm), 6)}
        return {"bbox": [int(v) for v in box], "rec_docs": nearest if known else UNKNOWN, **extra,
                "rec_scores": round(best, 6) if nearest is not None else None,
                "nearest_docs": nearest, "det_score": None if det_score is None else round(det_score, 6),
                "source": source, "uniform": bool(uniform),
                "topk": [{"label": l, "score": round(float(s), 6), **({} if i is None else {"id": int(i)})}
                         for l, s, i in zip(labels, scores, ids) if l is not None]}

    def _select(self, cands):
        """Detected boxes, merged by NMS; the whole image only when no detection is recognised."""
        dets = [c for c in cands if c["source"] == "det"]
        whole = next(c for c in cands if c["source"] == "image")
        known = self._nms([c for c in dets if c["rec_docs"] != UNKNOWN])
        unknown = [c for c in dets if c["rec_docs"] == UNKNOWN
                   and all(box_iou(c["bbox"], k["bbox"]) <= SAME_REGION_IOU for k in known)]
        if known:
            return known + unknown
        if whole["rec_docs"] != UNKNOWN or not dets:
            return [whole] + unknown
        return unknown

    def _nms(self, results):
        """Keep the best match; drop a box overlapping a kept one with the same label beyond
        rec_nms_thresold, or any label beyond SAME_REGION_IOU (one region, two answers)."""
        sign = 1.0 if self.gallery.higher_is_better else -1.0
        kept = []
        for r in sorted(results, key=lambda r: -sign * r["rec_scores"]):
            if all(box_iou(r["bbox"], k["bbox"]) <= (self.nms_thresh if r["rec_docs"] == k["rec_docs"]
                                                 else SAME_REGION_IOU) for k in kept):
                kept.append(r)
        return kept

    def _clip(self, box, width, height):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        x1, x2 = max(0, min(x1, width)), max(0, min(x2, width))
        y1, y2 = max(0, min(y1, height)), max(0, min(y2, height))
        if x2 - x1 < self.min_crop_size or y2 - y1 < self.min_crop_size:
            return None  # an empty or sliver crop cannot be recognised (and breaks cv2.resize)
        return [x1, y1, x2, y2]


def _rec_of_gallery(cfg, rec):
    """The fp32 model where Global.precision auto chose its int8 sibling (ppshitu/infer/precision.py) but the
    gallery was built by the fp32 model; else re-raise the gallery's refusal."""
    from .infer.precision import Choice, announce

    choice = getattr(rec, "precision_choice", None)
    if choice is None or choice.alternative is None:
        raise
    announce("rec", Choice(choice.alternative, "fp32", "the gallery was built by this model (build it again "
                           "with precision auto for int8's speed)"))
    return factory.rec_predictor(cfg, precision="fp32")


def _number(value, key, kind, low=None):
    """A finite int/float setting; ConfigError naming `key` otherwise."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
        if kind is int and number != value:
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if low is not None and number < low:
        raise ConfigError(f"{key} must be >= {low}, got {value!r}")
    return number
