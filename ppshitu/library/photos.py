"""Real photos and generated near-duplicates of them, for calibrating and measuring duplicate finding.

The photos are scikit-image's bundled samples (`skimage.data`, no download). Distinct images are the
photos themselves and crops of them that barely overlap (IoU <= `MAX_CROP_IOU` within one photo); a
near-duplicate is one of those images edited the way copies of a photo get edited:

    jpeg        re-encoded at JPEG quality 10-30
    resize      scaled to 30-60 % of its size
    crop        10 % cut off (in total, from random sides)
    tone        brightness +-15-30 %, contrast x0.7-1.35
    rotate      rotated 2-6 degrees (corners filled by reflection)
    combo       two of the above

The photos are split in disjoint sets: `CALIBRATION_*` choose thresholds (ppshitu/library/calibrate.py),
`BENCH_*` measure them (bench/bench_duplicates.py), so the benchmark never scores a threshold on the
photos it was chosen on. `*_PHOTOS` are photos of subjects; `*_TEXTURES` (brick, grass, a star field,
tissue, text, ...) are the hard case for "distinct": two crops of one texture look alike to any
global descriptor, so the benchmark reports them apart.
"""
import io

import cv2
import numpy as np
from PIL import Image

BENCH_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
BENCH_TEXTURES = ("brick", "gravel", "immunohistochemistry", "text")
CALIBRATION_PHOTOS = ("motorcycle", "clock", "coins", "retina", "moon")
CALIBRATION_TEXTURES = ("grass", "hubble_deep_field", "cell", "page")
EDITS = ("jpeg", "resize", "crop", "tone", "rotate", "combo")
MAX_CROP_IOU = 0.25


def load_photo(name):
    """A scikit-image sample photo as RGB uint8 (grey ones repeated into 3 channels)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(1e-9, float(img.max())))).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def distinct_images(names, per_photo, rng, size=224):
    """[(name, rgb)]: each photo (resized so its longer side is `size`) and up to `per_photo - 1` crops
    of 30-55 % of its side (so at most ~38 % of its area, far from the 10 % crop of an edit),
    pairwise IoU <= MAX_CROP_IOU with each other."""
    out = []
    for name in names:
        photo = load_photo(name)
        h, w = photo.shape[:2]
        out.append((f"{name}", _fit(photo, size)))
        boxes = []
        for _ in range(400):
            if len(boxes) >= per_photo - 1:
                break
            s = rng.uniform(0.30, 0.55)
            bw, bh = int(w * s), int(h * s * rng.uniform(0.8, 1.25))
            bh = min(bh, h)
            x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = (x, y, x + bw, y + bh)
            if all(_iou(box, b) <= MAX_CROP_IOU for b in boxes):
                boxes.append(box)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            out.append((f"{name}_crop{i:02d}", _fit(photo[y1:y2, x1:x2], size)))
    return out


def _fit(rgb, size):
    h, w = rgb.shape[:2]
    s = size / float(max(h, w))
    return cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)


def jpeg_bytes(rgb, quality=92):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def edit(rgb, kind, rng):
    """One near-duplicate of `rgb` (RGB uint8) made by the edit `kind` (see the module docstring)."""
    h, w = rgb.shape[:2]
    if kind == "jpeg":
        return _decode(jpeg_bytes(rgb, rng.integers(10, 31)))
    if kind == "resize":
        s = rng.uniform(0.3, 0.6)
        return cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    if kind == "crop":
        cut_x, cut_y = rng.uniform(0, 0.10), rng.uniform(0, 0.10)  # 10 % of each side in total
        left, top = rng.uniform(0, cut_x), rng.uniform(0, cut_y)
        x1, y1 = int(w * left), int(h * top)
        x2, y2 = int(w * (1 - (cut_x - left))), int(h * (1 - (cut_y - top)))
        if rng.random() < 0.5:  # at least one side loses the full 10 %
            x1, x2 = int(w * left), int(w * (0.90 + left))
        return np.ascontiguousarray(rgb[y1:y2, x1:x2])
    if kind == "tone":
        contrast = rng.uniform(0.7, 1.35)
        brightness = rng.choice([-1, 1]) * rng.uniform(0.15, 0.30) * 255
        out = (rgb.astype(np.float32) - 128) * contrast + 128 + brightness
        return np.clip(out, 0, 255).astype(np.uint8)
    if kind == "rotate":
        angle = rng.choice([-1, 1]) * rng.uniform(2, 6)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if kind == "combo":
        a, b = rng.choice([k for k in EDITS if k != "combo"], size=2, replace=False)
        return edit(edit(rgb, a, rng), b, rng)
    raise ValueError(f"unknown edit {kind!r}; one of {EDITS}")


def near_duplicate_set(images, families, variants, rng):
    """Turn distinct images into a set with known duplicates.

    `images`: [(name, rgb)]; the first `families` of them (after shuffling) each get `variants`
    edited copies (edits drawn from EDITS); the rest stay single. Returns
    [(name, rgb, family, edit)] with `family` the index of the original image (its copies share it)
    and `edit` None for originals."""
    order = rng.permutation(len(images))
    out = []
    for rank, i in enumerate(order):
        name, rgb = images[i]
        out.append((name, rgb, int(i), None))
        if rank < families:
            kinds = rng.choice(EDITS, size=variants, replace=variants > len(EDITS))
            for v, kind in enumerate(kinds):
                out.append((f"{name}_{kind}{v}", edit(rgb, str(kind), rng), int(i), str(kind)))
    return out


def duplicate_pairs(families):
    """The set of (i, j), i < j, of items sharing a family."""
    by = {}
    for i, f in enumerate(families):
        by.setdefault(f, []).append(i)
    return {(a, b) for members in by.values() for x, a in enumerate(members) for b in members[x + 1:]}
