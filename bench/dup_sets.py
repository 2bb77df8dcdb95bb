"""The duplicate benchmark's image sets (bench/bench_duplicates.py), built two different ways so that a
rule that does not generalise shows it.

Every set mixes originals, edited copies of some of them (the true duplicates) and distinct images
that look alike (crops of one photo that barely overlap, the same designed scene with its objects
moved: what bursts and near shots are in a photo library). Files are written as JPEG (quality 92)
under shuffled names, like a user's folder.

* **dev** -- the set used while building the verifier and its calibration: scikit-image's
  calibration photos (`photos.CALIBRATION_PHOTOS` + `CALIBRATION_TEXTURES`) and designed images
  drawn by dataset/synthetic.py on its procedural backgrounds (object classes 0-299); one or two
  edited copies each, edits `photos.edit` (JPEG 10-30, resize 30-60 %, 10 % crop, brightness /
  contrast, 2-6 degree rotation with reflected corners, two of these).
* **held-out** -- built once, looked at once, never used to choose anything: other photographs
  (`photos.BENCH_PHOTOS` + `BENCH_TEXTURES`, scikit-image's cat, scikit-learn's china and flower,
  matplotlib's grace_hopper) and designed images on photo backgrounds (classes 300-599, other
  seeds); one to three edited copies each with other edit ranges (`HELD_OUT_EDITS`: JPEG 8-25,
  resize 20-50 %, 5-20 % crop, brightness +-10-35 % and contrast 0.6-1.5, 1-8 degree rotation
  cropped to the inner rectangle, two or three of these).
* **confusers** -- pairs that look alike and are NOT the same picture, from the held-out sources
  (`kind`): two crops of a photograph sharing less than half their area (`crop_under_half`);
  neighbouring frames of a burst, a subject (an object drawn by dataset/synthetic, or a region of
  the photo itself) having moved by 4-15 % of the frame (`neighbouring_frames`); colour variants of
  one design (one object of a designed image recoloured, e.g. skin-tone-like shifts) or one region
  of a photograph recoloured (`colour_variant`). A good rule finds no duplicates among them. A pair
  whose change landed on flat content (nothing visibly changed: `visibly_different`) is drawn again.
"""
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dataset import synthetic as syn  # noqa: E402
from ppshitu.library import photos  # noqa: E402

HELD_OUT_PHOTOS = photos.BENCH_PHOTOS   # (scikit-image's "cat" is "chelsea": the same photo)
EXTRA_PHOTOS = ("sklearn:china", "sklearn:flower", "matplotlib:grace_hopper")
HELD_OUT_EDITS = ("jpeg", "resize", "crop", "tone", "rotate", "combo")
SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30))


def load_any(name):
    """A photo by name: scikit-image's (photos.load_photo), or 'sklearn:china' / 'matplotlib:grace_hopper'."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image
        return np.ascontiguousarray(load_sample_image(name.split(":")[1] + ".jpg")[:, :, :3])
    if name.startswith("matplotlib:"):
        import matplotlib.cbook as cbook
        from PIL import Image
        with cbook.get_sample_data(name.split(":")[1] + ".jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    return photos.load_photo(name)


def _fit(rgb, size):
    return photos._fit(rgb, size)


def _jpeg(rgb, q):
    return photos._decode(photos.jpeg_bytes(rgb, int(q)))


# ------------------------------------------------------------------ the held-out edits (other ranges)
def held_out_edit(rgb, kind, rng):
    h, w = rgb.shape[:2]
    if kind == "jpeg":
        return _jpeg(rgb, rng.integers(8, 26))
    if kind == "resize":
        s = rng.uniform(0.2, 0.5)
        return cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    if kind == "crop":
        total = rng.uniform(0.05, 0.20)
        cx, cy = total * rng.uniform(0.3, 1.0), total * rng.uniform(0.3, 1.0)
        lx, ty = rng.uniform(0, cx), rng.uniform(0, cy)
        x1, y1, x2, y2 = int(w * lx), int(h * ty), int(w * (1 - cx + lx)), int(h * (1 - cy + ty))
        return np.ascontiguousarray(rgb[y1:y2, x1:x2])
    if kind == "tone":
        c = rng.uniform(0.6, 1.5)
        b = rng.choice([-1, 1]) * rng.uniform(0.10, 0.35) * 255
        return np.clip((rgb.astype(np.float32) - 128) * c + 128 + b, 0, 255).astype(np.uint8)
    if kind == "rotate":
        deg = rng.choice([-1, 1]) * rng.uniform(1, 8)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        out = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
        a = np.radians(abs(deg))
        s = 1.0 / (np.cos(a) + max(w / h, h / w) * np.sin(a))
        cw, ch = int(w * s), int(h * s)
        return np.ascontiguousarray(out[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
    if kind == "combo":
        kinds = [k for k in HELD_OUT_EDITS if k != "combo"]
        out = rgb
        for k in rng.choice(kinds, size=int(rng.integers(2, 4)), replace=False):
            out = held_out_edit(out, str(k), rng)
        return out
    raise ValueError(kind)


# ------------------------------------------------------------------ designed images
def designed(rng, size, classes, photo_bg=False, n_objects=None):
    """(image, background, [(sprite, x, y)]) of a designed image: objects on a background (`photo_bg`:
    True for dataset/synthetic's photo backgrounds, a list of RGB photos for crops of those)."""
    h, w = size
    if isinstance(photo_bg, (list, tuple)):
        bg = photo_background_from(photo_bg, rng, size)
    else:
        bg = syn.photo_background(rng, size) if photo_bg else syn.render_background(rng, size, clutter=1.0)
    img = bg.copy()
    sprites = []
    for _ in range(n_objects or int(rng.integers(1, 4))):
        sp = syn.render_object(int(rng.choice(classes)), rng, int(min(h, w) * rng.uniform(0.25, 0.55)))
        x, y = syn._place(rng, sp, size)
        syn._paste(img, sp, x, y)
        sprites.append((sp, x, y))
    return img, bg, sprites


def _compose(bg, sprites, rng_seed):
    img = bg.copy()
    for sp, x, y in sprites:
        syn._paste(img, sp, x, y)
    return syn._camera(img, np.random.default_rng(rng_seed))


def _moved(bg, sprites, rng, share):
    """The same sprites, one of them moved by `share` of the frame (a neighbouring frame)."""
    h, w = bg.shape[:2]
    k = int(rng.integers(len(sprites)))
    out = []
    for j, (sp, x, y) in enumerate(sprites):
        if j == k:
            dx = int(rng.choice([-1, 1]) * share * w)
            dy = int(rng.uniform(-0.5, 0.5) * share * h)
            nx = int(np.clip(x + dx, 0, w - sp.shape[1]))
            if abs(nx - x) < abs(dx) // 2:   # against the frame's edge: the other way
                nx = int(np.clip(x - dx, 0, w - sp.shape[1]))
            x, y = nx, int(np.clip(y + dy, 0, h - sp.shape[0]))
        out.append((sp, x, y))
    return out


def _recoloured_sprite(sp, rng):
    """A colour variant of a sprite: its body recoloured to a skin tone or a rotated hue."""
    sp = sp.copy()
    rgb = sp[..., :3]
    if rng.random() < 0.5:
        tone = np.float32(SKIN[int(rng.integers(len(SKIN)))])
        grey = rgb.astype(np.float32).mean(2, keepdims=True) / 255.0
        new = np.clip(tone * (0.55 + 0.6 * grey), 0, 255)
    else:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(25, 65)) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + 60, 0, 255)
        new = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    sp[..., :3] = new.astype(np.uint8)
    return sp


# ------------------------------------------------------------------ the sets
def _family_set(originals, lookalikes, copies_range, edit_fn, edits, rng):
    """[{name, rgb, family, edit}]: originals with edited copies, look-alikes alone."""
    items = []
    fam = 0
    for name, rgb in originals:
        items.append({"source": name, "rgb": rgb, "family": fam, "edit": None})
        for v in range(int(rng.integers(copies_range[0], copies_range[1] + 1))):
            kind = str(rng.choice(edits))
            items.append({"source": f"{name}_{kind}{v}", "rgb": edit_fn(rgb, kind, rng), "family": fam, "edit": kind})
        fam += 1
    for name, rgb in lookalikes:
        items.append({"source": name, "rgb": rgb, "family": fam, "edit": None})
        fam += 1
    return items


def dev_set(rng, quick=False):
    n_crops = 3 if quick else 6
    photo = photos.distinct_images(photos.CALIBRATION_PHOTOS, n_crops, rng, size=320)
    tex = photos.distinct_images(photos.CALIBRATION_TEXTURES, max(2, n_crops // 2), rng, size=320)
    classes = np.arange(0, 300)
    des, near = [], []
    for d in range(8 if quick else 24):
        img, bg, sprites = designed(rng, (240, 320), classes)
        des.append((f"designed{d}", syn._camera(img, rng)))
        if d % 3 == 0:   # a near shot of it: an object moved
            near.append((f"designed{d}_near", _compose(bg, _moved(bg, sprites, rng, rng.uniform(0.08, 0.2)), d)))
    originals = photo + tex + des
    order = rng.permutation(len(originals))
    with_copies = [originals[i] for i in order[: len(order) // 2]]
    alone = [originals[i] for i in order[len(order) // 2:]] + near
    return _family_set(with_copies, alone, (1, 2), photos.edit, photos.EDITS, rng)


def held_out_photos(rng, per_photo, size):
    out = photos.distinct_images(HELD_OUT_PHOTOS + photos.BENCH_TEXTURES, per_photo, rng, size=size)
    for name in EXTRA_PHOTOS:
        img = load_any(name)
        out += [(name, _fit(img, size))]
        h, w = img.shape[:2]
        boxes = []
        for _ in range(200):
            if len(boxes) >= per_photo - 1:
                break
            s = rng.uniform(0.3, 0.55)
            bw, bh = int(w * s), int(h * s)
            x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = (x, y, x + bw, y + bh)
            if all(photos._iou(box, b) <= photos.MAX_CROP_IOU for b in boxes):
                boxes.append(box)
        out += [(f"{name}_crop{i}", _fit(img[b[1]:b[3], b[0]:b[2]], size)) for i, b in enumerate(boxes)]
    return out


def held_out_set(rng, quick=False):
    photo = held_out_photos(rng, 3 if quick else 5, 384)
    classes = np.arange(300, 600)
    des, near = [], []
    for d in range(8 if quick else 30):
        img, bg, sprites = designed(rng, (288, 384), classes, photo_bg=d % 2 == 0)
        des.append((f"designed{d}", syn._camera(img, rng)))
        if d % 3 == 1:
            near.append((f"designed{d}_near", _compose(bg, _moved(bg, sprites, rng, rng.uniform(0.05, 0.15)), d)))
    originals = photo + des
    order = rng.permutation(len(originals))
    k = int(len(order) * 0.6)
    with_copies = [originals[i] for i in order[:k]]
    alone = [originals[i] for i in order[k:]] + near
    return _family_set(with_copies, alone, (1, 3), held_out_edit, HELD_OUT_EDITS, rng)


def _shares(a, b):
    """The smaller of the two shares of a box's area the other box covers."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return max(inter / float((a[2] - a[0]) * (a[3] - a[1])), inter / float((b[2] - b[0]) * (b[3] - b[1])))


class _Crops:
    """Crops of the source photos such that no two crops of one photo share half the area of either:
    the confuser folder then holds no duplicates at all, within or across pairs."""

    def __init__(self, imgs):
        self.imgs, self.boxes = imgs, {i: [] for i in range(len(imgs))}

    def take(self, rng, lo=0.35, hi=0.6, partner=None, tries=200):
        for _ in range(tries):
            i = int(rng.integers(len(self.imgs))) if partner is None else partner[0]
            h, w = self.imgs[i].shape[:2]
            s = rng.uniform(lo, hi)
            cw, ch = int(w * s), int(h * s)
            if partner is not None:
                px, py = partner[1][0], partner[1][1]
                x = int(np.clip(px + rng.uniform(0.3, 0.9) * cw * rng.choice([-1, 1]), 0, w - cw))
                y = int(np.clip(py + rng.uniform(0.0, 0.5) * ch * rng.choice([-1, 1]), 0, h - ch))
                cw, ch = partner[1][2] - px, partner[1][3] - py
            else:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x, y, x + cw, y + ch)
            if box[2] > w or box[3] > h:
                continue
            if partner is not None and not 0.15 <= _shares(box, partner[1]) < 0.5:
                continue
            if all(_shares(box, b) < 0.5 for b in self.boxes[i]):
                self.boxes[i].append(box)
                return i, box
        return None

    def image(self, taken, size):
        i, (x1, y1, x2, y2) = taken
        return _fit(self.imgs[i][y1:y2, x1:x2], size)


def confuser_pairs(rng, sources, classes, n_per_kind=40, size=384, photo_bg=True):
    """[(kind, rgb_a, rgb_b)]: pairs that are not the same picture (module docstring); no two images in
    the whole set are the same picture either (every photo crop shares less than half its area with
    any other crop of that photo; designed images are drawn anew for each pair)."""
    out = []
    crops = _Crops([load_any(s) for s in sources])
    # crops sharing less than half their area (15-50 %)
    for _ in range(20 * n_per_kind):
        if sum(k == "crop_under_half" for k, *_ in out) >= n_per_kind:
            break
        a = crops.take(rng, 0.3, 0.5)
        b = crops.take(rng, partner=a) if a is not None else None
        if a is None or b is None:
            continue
        out.append(("crop_under_half", crops.image(a, size), crops.image(b, size)))
    # neighbouring frames: a designed subject moved, or a region of a photo moved
    for n in range(n_per_kind):
        taken = crops.take(rng, 0.25, 0.45) if n % 2 else None
        if taken is None:
            def frames():
                img, bg, sprites = designed(rng, (size * 3 // 4, size), classes, photo_bg=photo_bg)
                return (_compose(bg, sprites, 1000 + n),
                        _compose(bg, _moved(bg, sprites, rng, rng.uniform(0.04, 0.15)), 2000 + n))
        else:
            base = crops.image(taken, size)
            frames = lambda: (base, _moved_region(base, rng))  # noqa: E731
        out.append(("neighbouring_frames", *visible_pair(frames, "neighbouring_frames", n)))
    # colour variants of one design, or of a region of a photo
    for n in range(n_per_kind):
        taken = crops.take(rng, 0.25, 0.45) if n % 2 else None
        if taken is None:
            def variants():
                img, bg, sprites = designed(rng, (size * 3 // 4, size), classes, photo_bg=photo_bg,
                                            n_objects=int(rng.integers(1, 3)))
                k = int(rng.integers(len(sprites)))
                variant = [(_recoloured_sprite(sp, rng) if j == k else sp, x, y) for j, (sp, x, y) in enumerate(sprites)]
                return _compose(bg, sprites, 3000 + n), _compose(bg, variant, 3000 + n)
        else:
            base = crops.image(taken, size)
            variants = lambda: (base, _recoloured_region(base, rng))  # noqa: E731
        out.append(("colour_variant", *visible_pair(variants, "colour_variant", n)))
    return out


REDRAWS = 20


def visible_pair(draw, kind, n, tries=REDRAWS):
    """(a, b) from draw() that differ visibly (visibly_different), redrawn up to `tries` times: a region moved
    or recoloured onto flat content leaves the same picture twice, which is no confuser."""
    for _ in range(tries):
        a, b = draw()
        if visibly_different(a, b):
            return a, b
    raise RuntimeError(f"confuser pair {n} ({kind}): {tries} draws in a row left the two images visibly the same "
                       f"(visibly_different: < {VISIBLE_SHARE:.1%} of the pixels changed by > {VISIBLE_LEVELS} levels)")


def _region(shape, rng, lo=0.04, hi=0.15):
    h, w = shape[:2]
    area = rng.uniform(lo, hi) * h * w
    aspect = rng.uniform(0.6, 1.6)
    rw, rh = min(w - 4, int(np.sqrt(area * aspect))), min(h - 4, int(np.sqrt(area / aspect)))
    x, y = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
    return x, y, rw, rh


def _moved_region(rgb, rng):
    """A burst's next frame: a region of the photo (the subject) shifted by 4-15 % of the frame."""
    h, w = rgb.shape[:2]
    x, y, rw, rh = _region(rgb.shape, rng)
    dx = int(rng.choice([-1, 1]) * rng.uniform(0.04, 0.15) * w)
    nx = int(np.clip(x + dx, 0, w - rw))
    if abs(nx - x) < abs(dx) // 2:   # against the frame's edge: the other way
        nx = int(np.clip(x - dx, 0, w - rw))
    out = rgb.copy()
    patch = rgb[y:y + rh, x:x + rw].copy()
    mask = np.zeros((rh, rw), np.float32)
    cv2.ellipse(mask, (rw // 2, rh // 2), (rw // 2, rh // 2), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 2)[..., None]
    roi = out[y:y + rh, nx:nx + rw].astype(np.float32)
    out[y:y + rh, nx:nx + rw] = np.clip(roi * (1 - mask) + patch * mask, 0, 255).astype(np.uint8)
    return out


def _recoloured_region(rgb, rng):
    """One region (a shirt, a car) of a photo in another colour."""
    x, y, rw, rh = _region(rgb.shape, rng)
    mask = np.zeros(rgb.shape[:2], np.float32)
    cv2.ellipse(mask, (x + rw // 2, y + rh // 2), (rw // 2, rh // 2), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 2)[..., None]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(30, 90)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3 + 50, 0, 255)
    alt = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(rgb * (1 - mask) + alt * mask, 0, 255).astype(np.uint8)


def write_items(items, out, rng):
    """Write [{rgb, ...}] as shuffled JPEG files; returns rows without pixels, with file and name."""
    os.makedirs(out, exist_ok=True)
    rows = []
    for n, i in enumerate(rng.permutation(len(items))):
        it = items[i]
        file = os.path.join(out, f"img_{n:05d}.jpg")
        with open(file, "wb") as f:
            f.write(photos.jpeg_bytes(it["rgb"], 92))
        rows.append({k: v for k, v in it.items() if k != "rgb"} | {"file": file, "name": os.path.basename(file)})
    return rows


VISIBLE_LEVELS, VISIBLE_SHARE = 20, 0.002


def visibly_different(a, b):
    """Whether two same-frame images differ anywhere a viewer could see: >= VISIBLE_SHARE of the pixels by
    more than VISIBLE_LEVELS in some channel (lightly blurred: camera noise is no difference). A moved
    region or a recoloured object that lands on flat content changes nothing, and such a pair is the
    same picture, not a confuser. (Crops of different areas differ by construction: True.)"""
    if a.shape != b.shape:
        return True
    blur = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5)  # noqa: E731
    return bool((np.abs(blur(a) - blur(b)).max(2) > VISIBLE_LEVELS).mean() >= VISIBLE_SHARE)


def write_confusers(pairs, out, rng):
    """Write confuser pairs as files; returns [{kind, a, b, visible}] (names; `visible`: visibly_different)."""
    items, rows = [], []
    visible = [visibly_different(a, b) if kind != "crop_under_half" else True for kind, a, b in pairs]
    for n, (kind, a, b) in enumerate(pairs):
        items += [{"rgb": a, "pair": n, "kind": kind, "side": "a"}, {"rgb": b, "pair": n, "kind": kind, "side": "b"}]
    written = write_items(items, out, rng)
    by = {}
    for r in written:
        by.setdefault(r["pair"], {})[r["side"]] = r["name"]
        by[r["pair"]]["kind"] = r["kind"]
    for n in sorted(by):
        rows.append({"kind": by[n]["kind"], "a": by[n]["a"], "b": by[n]["b"], "visible": visible[n]})
    return rows, written


# ------------------------------------------------------------------ dev-hard: the development set made harder
DEV_HARD_EDITS = ("jpeg", "resize", "crop", "tone", "rotate", "combo")


def dev_hard_edit(rgb, kind, rng):
    """Edits stronger than dev's and unlike the held-out ones: JPEG 5-20, resize 15-40 %, a 10-25 % crop,
    brightness +-15-40 % with contrast 0.5-1.6, a 3-10 degree rotation with black or reflected corners,
    two or three of these."""
    h, w = rgb.shape[:2]
    if kind == "jpeg":
        return _jpeg(rgb, rng.integers(5, 21))
    if kind == "resize":
        s = rng.uniform(0.15, 0.4)
        return cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    if kind == "crop":
        cut = rng.uniform(0.10, 0.25)
        lx = rng.uniform(0, cut)
        return np.ascontiguousarray(rgb[:, int(w * lx):int(w * (1 - cut + lx))] if rng.random() < 0.5 else
                                    rgb[int(h * lx):int(h * (1 - cut + lx)), :])
    if kind == "tone":
        c = rng.uniform(0.5, 1.6)
        b = rng.choice([-1, 1]) * rng.uniform(0.15, 0.40) * 255
        return np.clip((rgb.astype(np.float32) - 128) * c + 128 + b, 0, 255).astype(np.uint8)
    if kind == "rotate":
        deg = rng.choice([-1, 1]) * rng.uniform(3, 10)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        border = cv2.BORDER_CONSTANT if rng.random() < 0.5 else cv2.BORDER_REFLECT_101
        return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
    if kind == "combo":
        out = rgb
        for k in rng.choice([k for k in DEV_HARD_EDITS if k != "combo"], size=int(rng.integers(2, 4)), replace=False):
            out = dev_hard_edit(out, str(k), rng)
        return out
    raise ValueError(kind)


def photo_background_from(imgs, rng, shape):
    """syn.photo_background, from the given photos only."""
    img = imgs[int(rng.integers(len(imgs)))]
    h, w = img.shape[:2]
    s = rng.uniform(0.4, 1.0)
    ch, cw = max(8, int(h * s)), max(8, int(w * s))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return cv2.resize(img[y:y + ch, x:x + cw], (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def dev_hard_set(rng, quick=False):
    """The development set made harder (stronger edits, designs on photo backgrounds, one to three
    copies): dev's sources only."""
    srcs = [photos.load_photo(n) for n in photos.CALIBRATION_PHOTOS + photos.CALIBRATION_TEXTURES]
    photo = photos.distinct_images(photos.CALIBRATION_PHOTOS, 3 if quick else 6, rng, size=352)
    photo += photos.distinct_images(photos.CALIBRATION_TEXTURES, 2 if quick else 3, rng, size=352)
    classes = np.arange(0, 300)
    des, near = [], []
    for d in range(8 if quick else 30):
        size = (264, 352)
        bg = photo_background_from(srcs, rng, size) if d % 2 == 0 else syn.render_background(rng, size, clutter=1.0)
        img, sprites = bg.copy(), []
        for _ in range(int(rng.integers(1, 4))):
            sp = syn.render_object(int(rng.choice(classes)), rng, int(min(size) * rng.uniform(0.2, 0.5)))
            x, y = syn._place(rng, sp, size)
            syn._paste(img, sp, x, y)
            sprites.append((sp, x, y))
        des.append((f"designed{d}", syn._camera(img, rng)))
        if d % 3 == 2:
            near.append((f"designed{d}_near", _compose(bg, _moved(bg, sprites, rng, rng.uniform(0.05, 0.15)), d)))
    originals = photo + des
    order = rng.permutation(len(originals))
    k = int(len(order) * 0.6)
    return _family_set([originals[i] for i in order[:k]], [originals[i] for i in order[k:]] + near, (1, 3),
                       dev_hard_edit, DEV_HARD_EDITS, rng)


DEV_SOURCES = photos.CALIBRATION_PHOTOS + photos.CALIBRATION_TEXTURES
CONFUSER_SOURCES = HELD_OUT_PHOTOS + EXTRA_PHOTOS + photos.BENCH_TEXTURES
