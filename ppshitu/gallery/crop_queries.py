"""Calibration queries that look like what the system meets: a gallery item pasted on a photograph and cropped
as a detector's box would be, embedded by the gallery's own model.

    rows, vectors, _ = crop_query_vectors(items, image_root, embedder, sample=300, seed=0)
    m = calibrate.measure_queries(items.vectors, items.label_ids, rows, vectors, higher_is_better)

Why: a gallery image queried against the others of its label (calibrate.py's leave-one-out) scores higher than a
detector's crop of the same object on a photograph does (smaller, blurred, another background inside the box).
A threshold chosen on gallery-vs-gallery scores is then too strict for real queries: on held-out photo scenes
(bench/results/bench_calibration.md B) it reached precision 0.94 for a target of 0.8, at recall 0.17-0.35.
Here each sampled item is pasted (its central 70-100 %, scaled to 36-144 px, the size range of the scenes'
objects) at a random place on a random crop of a photograph, the whole blurred and noised like a camera, and cut
out by a box whose sides are jittered by ~8 % of its size, as a detector's box is. The known query of item i is
its crop against the gallery without item i; its unknown query the crop against the gallery without its label.

Backgrounds: scikit-image's sample photographs (requirements.txt) when they load; otherwise random crops of
the gallery's other images (recorded as `backgrounds` in the result). Seeded: the same gallery, model and seed
give the same queries.
"""
from functools import lru_cache, partial

import numpy as np


DEFAULT_SAMPLE = 600
MAX_CROPS_PER_ITEM = 10
MAX_TRIES = 4  # items tried per crop asked for, before giving up on unreadable files
CANVAS = (240, 320)  # (H, W): the photo a crop is cut from
OBJECT_SIDE = (0.15, 0.6)  # the object's longer side, a fraction of the canvas's shorter side
BOX_JITTER = 0.08  # sd of each box side's offset, a fraction of the object's size
KEEP = (0.7, 1.0)  # the central share of a gallery image pasted (its object, less its own background)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat",
          "colorwheel", "logo", "motorcycle_left", "motorcycle_right", "page", "camera", "moon", "coins", "grass",
          "gravel", "brick", "text", "clock", "horse")


@lru_cache(maxsize=1)
def photos():
    """scikit-image's sample photographs that load offline, RGB uint8 (empty when scikit-image is absent)."""
    try:
        from skimage import data
    except ImportError:
        return ()
    out = []
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001  (one fetched on demand, or absent in this version)
            continue
        img = img.astype(np.uint8) * 255 if img.dtype == bool else img.astype(np.uint8)
        out.append(np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]))
    return tuple(out)


def photo_crop(rng, sources, shape=CANVAS):
    """A random crop (40-100 % of each side) of one of `sources`, resized to `shape` (H, W), maybe mirrored
    (dataset/synthetic.py's photo_background for its scenes, too)."""
    import cv2

    img = sources[rng.integers(len(sources))]
    h, w = img.shape[:2]
    scale = rng.uniform(0.4, 1.0)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = cv2.resize(img[y:y + ch, x:x + cw], (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def pasted_crop(rgb, rng, sources):
    """`rgb` (an item's image) as a detector's crop of it on a photograph (module docstring)."""
    import cv2

    canvas = photo_crop(rng, sources).astype(np.float32)
    h, w = rgb.shape[:2]
    keep = rng.uniform(*KEEP)  # the central part: where a gallery image's object is
    ch, cw = max(2, int(round(h * keep))), max(2, int(round(w * keep)))
    obj = rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    side = rng.uniform(*OBJECT_SIDE) * min(CANVAS)
    f = side / max(ch, cw)
    oh, ow = max(8, int(round(ch * f))), max(8, int(round(cw * f)))
    obj = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    y, x = int(rng.integers(0, CANVAS[0] - oh + 1)), int(rng.integers(0, CANVAS[1] - ow + 1))
    canvas[y:y + oh, x:x + ow] = obj
    sigma = rng.uniform(0, 1.2)  # defocus and sensor noise, as a camera adds them
    if sigma > 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * rng.uniform(1, 6)
    canvas = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = (v + rng.normal(0, BOX_JITTER) * s for v, s in ((x, ow), (y, oh), (x + ow, ow), (y + oh, oh)))
    x1, y1 = int(np.clip(round(x1), 0, CANVAS[1] - 2)), int(np.clip(round(y1), 0, CANVAS[0] - 2))
    x2, y2 = int(np.clip(round(x2), x1 + 2, CANVAS[1])), int(np.clip(round(y2), y1 + 2, CANVAS[0]))
    return canvas[y1:y2, x1:x2]


def crop_query_vectors(items, image_root, embedder, sample=DEFAULT_SAMPLE, seed=0, progress=None):
    """(rows, vectors [m, D], backgrounds): `sample` crops of a seeded sample of gallery items (GalleryArrays
    rows) whose images read, several per item (up to MAX_CROPS_PER_ITEM) in a small gallery, each pasted anew and
    embedded by `embedder` (ppshitu/embedder.py). Items whose file is gone are skipped; none readable gives no
    rows. `progress`: wraps the batches (default a tqdm bar; False: none)."""
    import os

    from ..utils.image import ImageReadError, read_image

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    rows, images = [], []
    for i in order[:MAX_TRIES * sample]:  # (a gallery whose files are mostly gone is not read through)
        path = items.paths[i]
        if path is None:
            continue
        try:
            images.append(read_image(os.path.join(image_root or "", path)))
        except (ImageReadError, OSError):
            continue
        rows.append(int(i))
        if len(rows) >= sample:
            break
    # a small gallery: several crops of each item (other places, sizes, backgrounds), up to `sample` in all
    repeats = max(1, min(MAX_CROPS_PER_ITEM, sample // max(len(rows), 1)))
    rows, images = rows * repeats, images * repeats
    sources = photos()
    backgrounds = "photos" if sources else "gallery"
    if not sources:  # no photographs: the gallery's own images, cropped and enlarged, as clutter
        sources = tuple(images)
    crops = [pasted_crop(img, np.random.default_rng([seed, j]), sources) for j, img in enumerate(images)]
    vectors = np.zeros((0, embedder.embedding_size), np.float32)
    batches = range(0, len(crops), 32)
    if progress is None:
        from tqdm import tqdm
        progress = partial(tqdm, desc="calibration crops", unit="batch of 32", leave=False)
    for start in (progress(batches) if progress else batches):
        vectors = np.concatenate([vectors, embedder.embed_crops(crops[start:start + 32])])
    return np.asarray(rows, np.int64), vectors, backgrounds
