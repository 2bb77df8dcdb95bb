"""Gallery building from images: the pipeline behind tools/build_gallery.py, the demo
and the benchmarks.

Images are decoded and preprocessed in worker threads while the model runs the
previous batch; unreadable images are skipped with a warning each and a count at
the end. On `append`, images already in the gallery are skipped before any
decoding, so a re-run costs nothing and adds nothing.
"""
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..utils.image import MIN_IMAGE_SIDE, ImageReadError, check_recognisable, is_uniform, read_image
from .errors import GalleryError
from .base import (check_creatable, create_gallery, gallery_location, in_shard, open_gallery,
                   open_or_create_gallery, parse_shard)
from .model_id import model_fingerprint

log = logging.getLogger("ppshitu.gallery")
OPERATIONS = ("new", "append", "remove", "compact")


def read_data_file(data_file, delimiter="\t", label_only=False):
    """[(relpath, label)] from `relpath<delimiter>label` lines; the label is everything after the
    first delimiter, so it may contain spaces. `label_only`: a line may be just a label (path None)."""
    try:
        with open(data_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"IndexProcess.data_file: {data_file} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"IndexProcess.data_file: {data_file} is not UTF-8 text ({e})") from None
    entries = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(delimiter, 1)
        if len(parts) == 2 and parts[0].strip() and parts[1].strip():
            entries.append((parts[0].strip(), parts[1].strip()))
        elif label_only:
            entries.append((None, line.strip()))
        else:
            raise ConfigError(f"{data_file}:{no}: expected 'relpath{delimiter!r}label', got {line!r} "
                              f"(check IndexProcess.delimiter)")
    if not entries:
        raise ConfigError(f"IndexProcess.data_file: {data_file} lists no images")
    return entries


@dataclass
class Embedded:
    vectors: np.ndarray                  # float32 [m, D], one per readable image
    index: list = field(default_factory=list)    # position in the input list of each vector
    boxes: list = field(default_factory=list)    # main-object box per vector, None for the whole image
    unreadable: list = field(default_factory=list)


def main_object(det, rgb):
    """The detector's best box and its crop, or (None, the whole image) when it finds nothing."""
    boxes = det.predict(rgb)
    if not len(boxes):
        return None, rgb
    x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[0][:4])
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None, rgb
    return [float(v) for v in boxes[0][:4]], rgb[y1:y2, x1:x2]


class UniformImageError(ImageReadError):
    """A gallery image (or its main object) with no detail to recognise."""


def image_options(cfg):
    """embed_images's image options from a config (Global's reader limits and reduced_decode,
    IndexProcess.min_crop_std)."""
    g, ip = cfg.get("Global") or {}, cfg.get("IndexProcess") or {}
    return {"max_pixels": g.get("max_image_pixels"), "min_side": g.get("min_image_side", MIN_IMAGE_SIDE),
            "min_crop_std": ip.get("min_crop_std", 0.0), "reduced_decode": g.get("reduced_decode", True)}


def embed_images(rec, paths, batch_size=32, num_workers=2, det=None, desc="embedding", max_pixels=None,
                 min_side=MIN_IMAGE_SIDE, min_crop_std=0.0, reduced_decode=True):
    """Run `rec` (and `det`, to embed the main object) over image files. Skipped with a warning
    each (listed in `unreadable`): unreadable images, images past the pixel limit (`max_pixels`,
    None: ppshitu.utils.image's), images with a side under `min_side` px, and, with
    `min_crop_std` > 0, images (or main objects) without detail (see utils.image.is_uniform).
    `reduced_decode`: without a detector, large JPEGs are decoded at 1/2-1/8 scale, never below the
    model's input (utils.image); with one, in full, since its crops need the pixels."""
    batch_size, num_workers = max(1, int(batch_size)), max(1, int(num_workers))
    # a predictor whose preprocessing does not say what it needs gets full decodes
    decode_side = getattr(rec.preprocess, "decode_side", None) if reduced_decode and det is None else None

    def usable(rgb, path):
        if is_uniform(rgb, min_crop_std):
            raise UniformImageError(f"{path}: no detail to recognise (a blank or flat-colour image: pixel std "
                                    f"below IndexProcess.min_crop_std={min_crop_std})")
        return rgb

    def load(path):
        try:
            rgb = check_recognisable(read_image(path, max_pixels, decode_side), str(path), min_side)
            if det is not None:
                return rgb  # the detector runs in the main thread
            return rec.preprocess(usable(rgb, path))
        except ImageReadError as e:
            return e

    out = Embedded(np.zeros((0, rec.embedding_size), np.float32))
    chunks, starts = [], range(0, len(paths), batch_size)
    with ThreadPoolExecutor(num_workers) as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
        pending = [pool.submit(load, p) for p in paths[:batch_size]]
        for start in starts:
            loaded = [f.result() for f in pending]
            nxt = start + batch_size  # queue the next batch before the model runs this one
            pending = [pool.submit(load, p) for p in paths[nxt:nxt + batch_size]]
            inputs = []
            for offset, item in enumerate(loaded):
                if isinstance(item, ImageReadError):
                    log.warning("skipped unreadable image: %s", item)
                    out.unreadable.append(paths[start + offset])
                    continue
                box = None
                if det is not None:
                    box, crop = main_object(det, item)
                    try:
                        usable(crop, paths[start + offset])
                    except UniformImageError as e:
                        log.warning("skipped unreadable image: %s", e)
                        out.unreadable.append(paths[start + offset])
                        continue
                    item = rec.preprocess(crop)
                inputs.append(item)
                out.index.append(start + offset)
                out.boxes.append(box)
            if inputs:
                chunks.append(np.asarray(rec.predict_batch(np.stack(inputs)), np.float32))
            bar.update(len(loaded))
    if chunks:
        out.vectors = np.concatenate(chunks)
    if out.unreadable:
        log.warning("%d of %d images could not be read and were skipped", len(out.unreadable), len(paths))
    return out


def index_params(ip):
    """The IndexProcess keys that tune the FAISS index (None: the measured defaults)."""
    return {k: ip[k] for k in ("ef_search", "nprobe", "nlist") if ip.get(k) is not None}


def build_gallery(cfg, rec=None, det=None, shard=None):
    """Run IndexProcess.index_operation on the gallery IndexProcess names (`index_dir`; backend milvus:
    `uri` + `collection`); returns a summary dict. `rec`/`det` predictors are made from Global.* unless
    given. `shard` ("I/N"): embed only the data file's paths with path_hash(path) % N == I, so N
    processes (on any machines) fill one gallery; `append` only, and the first shard to arrive creates
    the gallery when it does not exist."""
    ip = cfg["IndexProcess"]
    op = ip["index_operation"]
    if op not in OPERATIONS:
        raise ConfigError(f"IndexProcess.index_operation must be one of {list(OPERATIONS)}, got {op!r}")
    shard = parse_shard(shard)
    if shard is not None and op != "append":
        raise ConfigError(f"--shard {shard[0]}/{shard[1]} needs IndexProcess.index_operation: append (each shard "
                          f"adds its share; the first creates the gallery when it does not exist), not {op}")
    index_dir = gallery_location(ip)[1]  # (index_dir, or milvus's uri: a missing one is a ConfigError)
    if op == "compact":
        g = open_gallery(ip)
        g.compact()
        return {"operation": op, "count": len(g)}
    remove_by = ip.get("remove_by", "path")
    entries = read_data_file(_required(ip, "data_file"), ip["delimiter"],
                             label_only=(op == "remove" and remove_by == "label"))
    if op == "remove":
        g = open_gallery(ip)
        if remove_by == "label":
            removed = g.remove(labels=sorted({label for _, label in entries}))
        else:
            removed = g.remove(paths=[path for path, _ in entries])
        return {"operation": op, "removed": len(removed), "count": len(g)}

    image_root = _required(ip, "image_root")
    if ip["dist_type"] not in ("IP", "L2"):
        raise ConfigError(f"IndexProcess.dist_type: {ip['dist_type']!r} (binary indexes) is not supported; "
                          f"use IP or L2")
    rec = rec or make_rec_predictor(cfg)
    # the size comes from the model; a value in the config is only an assertion about it
    if ip.get("embedding_size") is not None and ip["embedding_size"] != rec.embedding_size:
        raise ConfigError(f"IndexProcess.embedding_size is {ip['embedding_size']} but the model in "
                          f"{cfg['Global'].get('rec_inference_model_dir')} makes {rec.embedding_size}-d vectors; "
                          f"leave IndexProcess.embedding_size out (null) to take the model's")
    fingerprint = model_fingerprint(rec)  # of the weights themselves, not inference.yml's copy
    if det is None and ip.get("use_det"):
        det = make_det_predictor(cfg)
    gallery = None
    skipped = 0
    if shard is not None:
        entries = [(p, lab) for p, lab in entries if in_shard(p, shard)]
    if op == "new":
        check_creatable(ip, overwrite=True)  # refuse before embedding anything
    if op == "append":
        if shard is not None:
            gallery = open_or_create_gallery(ip, rec.embedding_size, model_fingerprint=fingerprint,
                                             **index_params(ip))
        else:
            gallery = open_gallery(ip, model_fingerprint=fingerprint, embedding_size=rec.embedding_size)
        if ip["dist_type"] != gallery.manifest["dist_type"]:
            raise ConfigError(f"IndexProcess.dist_type is {ip['dist_type']} but the gallery in {index_dir} "
                              f"uses {gallery.manifest['dist_type']}")
        present = gallery.existing_paths([p for p, _ in entries])
        skipped = sum(p in present for p, _ in entries)
        entries = [(p, lab) for p, lab in entries if p not in present]
    # the same image listed twice in the file: embed it once
    entries = list(dict((p, (p, lab)) for p, lab in entries).values())
    emb = embed_images(rec, [os.path.join(image_root, p) for p, _ in entries], ip["batch_size"],
                       ip.get("num_workers", 2), det, desc=f"{op} gallery", **image_options(cfg))
    labels = [entries[i][1] for i in emb.index]
    paths = [entries[i][0] for i in emb.index]
    boxes = emb.boxes if det is not None else None
    if op == "new":
        if not len(emb.vectors):
            raise GalleryError(f"no readable images in {ip['data_file']}: the gallery was not created")
        gallery = create_gallery(ip, rec.embedding_size, model_fingerprint=fingerprint, overwrite=True,
                                 vectors=emb.vectors, labels=labels, paths=paths, boxes=boxes, **index_params(ip))
        added = len(gallery)
    else:
        # (the model is checked again under the writer lock: a `new` may have replaced the gallery meanwhile)
        added = int((gallery.add(emb.vectors, labels, paths, boxes, fingerprint) >= 0).sum()) \
            if len(emb.vectors) else 0
    summary = {"operation": op, "added": added, "already_present": skipped,
               "unreadable": len(emb.unreadable), "count": len(gallery), "labels": len(gallery.labels())}
    if shard is not None:
        summary["shard"] = f"{shard[0]}/{shard[1]}"
    return summary


def make_rec_predictor(cfg):
    from ..infer import factory  # paddle loads only when a model is needed
    return factory.rec_predictor(cfg)


def make_det_predictor(cfg):
    from ..infer import factory
    det = factory.det_predictor(cfg, max_det_results=1)
    if det is None:
        raise ConfigError("IndexProcess.use_det is true but Global.det_inference_model_dir is empty")
    return det


def _required(ip, key):
    if not ip.get(key):
        raise ConfigError(f"IndexProcess.{key}: required")
    return ip[key]
