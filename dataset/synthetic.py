"""Deterministic synthetic data, so that training, tests and the demo need no download.

Three data sets share one family of procedural objects:

* a recognition set (PaddleClas list files, disjoint train/test classes, PP-ShiTu
  gallery/query lists) -- `make_recognition_set`;
* a miniature CUB_200_2011 tree with the real files and layout -- `make_mini_cub`;
* detection scenes with several objects on cluttered backgrounds (COCO json) --
  `make_scenes`.

An object's identity (shape, palette, pattern) depends on its class id only, never on
the seed, so a class looks the same in every data set: the demo detects objects in
scenes and finds them in a gallery built from the recognition set. Each image draws
from its own generator keyed by (seed, data set, index), so a file depends on nothing
but the seed and its own index -- not on generation order, nor on how many others
were asked for -- and the same seed writes byte-identical files.
"""
import itertools
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

DEFAULT_NUM_CLASSES = 60
JPEG_QUALITY = 95


def _rng(seed, tag, *index):
    """The generator for one item, keyed by seed, data set tag and the item's index."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(tag.encode()), *map(int, index)])


# --------------------------------------------------------------------------- identity
# Colours are few and shared, so no class owns a colour: shape and pattern must matter.
COLOURS = {
    "red": (210, 40, 45), "orange": (240, 135, 30), "yellow": (240, 205, 50),
    "green": (45, 150, 65), "teal": (25, 145, 150), "blue": (40, 85, 200),
    "purple": (120, 60, 170), "pink": (235, 125, 175), "brown": (125, 80, 45),
    "white": (238, 238, 232), "black": (28, 28, 32), "grey": (128, 128, 128),
}
PALETTES = (  # (body, pattern)
    ("blue", "white"), ("red", "yellow"), ("green", "black"), ("yellow", "blue"),
    ("purple", "orange"), ("white", "red"), ("teal", "pink"), ("brown", "white"),
    ("orange", "black"), ("grey", "green"),
)


def _circle(n=72):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


# Shapes: rng -> (name, parts); a part is (points in unit coordinates, is_hole).
_POLYGON_NAMES = {3: "triangle", 4: "diamond", 5: "pentagon", 6: "hexagon", 7: "heptagon", 8: "octagon"}


def _polygon(rng):
    n = int(rng.integers(3, 9))
    return _POLYGON_NAMES[n], [(_circle(n) * rng.uniform(0.8, 1.0, (n, 1)), False)]


def _oval(rng):
    return "oval", [(_circle() * (1.0, rng.uniform(0.5, 0.85)), False)]


def _star(rng):
    k = int(rng.integers(4, 9))
    radii = np.tile([1.0, rng.uniform(0.35, 0.6)], k)[:, None]
    return "star", [(_circle(2 * k) * radii, False)]


def _ring(rng):
    hole = _circle() * rng.uniform(0.4, 0.62) + rng.uniform(-0.12, 0.12, 2)
    return "ring", [(_circle(), False), (hole, True)]


def _cross(rng):
    w, a = rng.uniform(0.2, 0.4), rng.uniform(0.7, 1.0)
    pts = [(-w, -1), (w, -1), (w, -w), (a, -w), (a, w), (w, w),
           (w, 1), (-w, 1), (-w, w), (-a, w), (-a, -w), (-w, -w)]
    return "cross", [(np.array(pts, float), False)]


def _tile(rng):
    """A rounded rectangle, as a superellipse |x|^n + |y/aspect|^n = 1."""
    c, n = _circle(), rng.uniform(3.0, 8.0)
    pts = np.sign(c) * np.abs(c) ** (2 / n) * (1.0, rng.uniform(0.55, 0.9))
    return "tile", [(pts, False)]


def _crescent(rng):
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(0.35, 0.6) * np.array([np.cos(angle), np.sin(angle)])
    return "crescent", [(_circle(), False), (_circle() * rng.uniform(0.75, 0.95) + offset, True)]


def _arrow(rng):
    shaft, head_w, neck = rng.uniform(0.15, 0.3), rng.uniform(0.5, 0.9), 1 - rng.uniform(0.5, 0.9)
    pts = [(-1, -shaft), (neck, -shaft), (neck, -head_w), (1, 0), (neck, head_w), (neck, shaft), (-1, shaft)]
    return "arrow", [(np.array(pts, float), False)]


def _cluster(rng):
    """2-3 overlapping primitives fused into one body."""
    parts = []
    for i in range(int(rng.integers(2, 4))):
        _, sub = (_oval, _polygon, _star, _tile)[rng.integers(4)](rng)
        scale = rng.uniform(0.45, 0.7)
        angle = rng.uniform(0, 2 * np.pi)
        centre = 0.0 if i == 0 else scale * rng.uniform(0.6, 0.9) * np.array([np.cos(angle), np.sin(angle)])
        parts += [(pts * scale + centre, hole) for pts, hole in sub]
    return "cluster", parts


SHAPES = {"polygon": _polygon, "oval": _oval, "star": _star, "ring": _ring, "cross": _cross, "tile": _tile,
          "crescent": _crescent, "arrow": _arrow, "cluster": _cluster}


def _fit_unit(parts):
    """Centre the shape and scale it so its solid parts span [-1, 1] on the longer axis."""
    solid = np.concatenate([pts for pts, hole in parts if not hole])
    lo, hi = solid.min(0), solid.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    return tuple(((pts - centre) / half, hole) for pts, hole in parts)


# Patterns: canvas -> float32 map in [0, 1] (0 = body colour, 1 = pattern colour), in unit
# coordinates so a pattern keeps its look at every rendering size.
def _rotated(canvas, angle):
    u, v = canvas.grid()
    return u * np.cos(angle) + v * np.sin(angle), -u * np.sin(angle) + v * np.cos(angle)


def _stripes(canvas, angle, period, duty):
    a, _ = _rotated(canvas, angle)
    return (a / period % 1 < duty).astype(np.float32)


def _dots(canvas, angle, period, radius):
    a, b = _rotated(canvas, angle)
    a, b = a / period, b / period
    a = a + 0.5 * (np.floor(b) % 2)  # hexagonal packing
    return (np.hypot(a - np.round(a), b - np.round(b)) < radius).astype(np.float32)


def _checker(canvas, angle, period):
    a, b = _rotated(canvas, angle)
    return ((np.floor(a / period) + np.floor(b / period)) % 2).astype(np.float32)


def _gradient(canvas, angle, radial):
    a, b = _rotated(canvas, angle)
    t = np.hypot(a, b) / 1.2 if radial else (a + 1) / 2
    return np.clip(t, 0, 1).astype(np.float32)


def _rings(canvas, centre, period, duty):
    u, v = canvas.grid()
    return (np.hypot(u - centre[0], v - centre[1]) / period % 1 < duty).astype(np.float32)


def _waves(canvas, angle, period, amplitude, frequency):
    a, b = _rotated(canvas, angle)
    return ((b + amplitude * np.sin(a * frequency)) / period % 1 < 0.5).astype(np.float32)


def _glyphs(canvas, text, centre, height, bars):
    """Label-like marks: a few letters and bars, as printed on a product."""
    ink = np.zeros((canvas.size, canvas.size), np.uint8)
    font, thickness = cv2.FONT_HERSHEY_DUPLEX, max(1, round(0.1 * height * canvas.unit))
    (w, h), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = height * canvas.unit / h
    x, y = canvas.px(np.array([centre]))[0] + (-w * scale / 2, h * scale / 2)
    cv2.putText(ink, text, (round(x), round(y)), font, scale, 255, thickness, cv2.LINE_AA)
    for y0, x0, x1 in bars:
        (p0, p1) = canvas.px(np.array([(x0, y0), (x1, y0 + 0.12)])).round().astype(int)
        cv2.rectangle(ink, tuple(p0), tuple(p1), 255, -1)
    return ink.astype(np.float32) / 255


def _stripes_spec(rng):
    return "striped", partial(_stripes, angle=rng.uniform(0, np.pi), period=rng.uniform(0.25, 0.5),
                              duty=rng.uniform(0.35, 0.6))


def _dots_spec(rng):
    return "dotted", partial(_dots, angle=rng.uniform(0, np.pi), period=rng.uniform(0.3, 0.5),
                             radius=rng.uniform(0.2, 0.35))


def _checker_spec(rng):
    return "checkered", partial(_checker, angle=rng.uniform(0, np.pi / 2), period=rng.uniform(0.3, 0.55))


def _gradient_spec(rng):
    return "shaded", partial(_gradient, angle=rng.uniform(0, 2 * np.pi), radial=bool(rng.integers(2)))


def _rings_spec(rng):
    return "ringed", partial(_rings, centre=tuple(rng.uniform(-0.3, 0.3, 2)), period=rng.uniform(0.25, 0.45),
                             duty=rng.uniform(0.35, 0.6))


def _waves_spec(rng):
    return "wavy", partial(_waves, angle=rng.uniform(0, np.pi), period=rng.uniform(0.3, 0.5),
                           amplitude=rng.uniform(0.06, 0.15), frequency=rng.uniform(5, 10))


def _glyphs_spec(rng):
    text = "".join(rng.choice(list("AEHKMRSTXZ2347"), int(rng.integers(2, 4))))
    bars = tuple((rng.uniform(0.2, 0.5), rng.uniform(-0.8, -0.3), rng.uniform(0.3, 0.8))
                 for _ in range(int(rng.integers(1, 3))))
    return "lettered", partial(_glyphs, text=text, centre=(rng.uniform(-0.15, 0.15), rng.uniform(-0.35, -0.1)),
                               height=rng.uniform(0.45, 0.7), bars=bars)


PATTERNS = {"stripes": _stripes_spec, "dots": _dots_spec, "checker": _checker_spec, "gradient": _gradient_spec,
            "rings": _rings_spec, "waves": _waves_spec, "glyphs": _glyphs_spec}


def _shuffled_combos():
    """Every (shape, pattern, palette) once, in a fixed shuffled order: the first 630
    classes differ in at least one discrete trait, and neighbouring ids rarely share two."""
    combos = list(itertools.product(SHAPES, PATTERNS, PALETTES))
    return tuple(combos[i] for i in np.random.default_rng(20240601).permutation(len(combos)))


_COMBOS = _shuffled_combos()


@dataclass(frozen=True)
class ObjectSpec:
    """Everything that makes a class recognisable; views only add nuisance on top."""
    class_id: int
    name: str
    shape: str               # a key of SHAPES
    pattern: str             # a key of PATTERNS
    palette: tuple           # (body, pattern) colour names
    parts: tuple
    texture: object          # canvas -> pattern map, see the pattern functions
    outline: object          # RGB of the rim, or None


@lru_cache(maxsize=None)
def object_spec(class_id):
    """The fixed identity of `class_id` (any non-negative int), independent of any seed."""
    rng = _rng(0, "object-identity", class_id)
    shape, pattern, palette = _COMBOS[class_id % len(_COMBOS)]
    noun, parts = SHAPES[shape](rng)
    adjective, texture = PATTERNS[pattern](rng)
    outline = None
    if rng.random() < 0.6:
        outline = COLOURS["black"] if np.mean(COLOURS[palette[0]]) > 100 else COLOURS["white"]
    return ObjectSpec(class_id, f"{palette[0]} {adjective} {noun} {class_id}", shape, pattern, palette,
                      _fit_unit(parts), texture, outline)


def class_name(class_id):
    """Human-readable, unique name of a class, e.g. 'blue striped star 37'."""
    return object_spec(class_id).name


# --------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class _Canvas:
    """A square canvas on which unit coordinates [-1, 1] span 80% of the side."""
    size: int

    @property
    def unit(self):
        return 0.4 * self.size

    def px(self, pts):
        return pts * self.unit + (self.size - 1) / 2

    def grid(self):
        """Unit coordinates of the pixel centres, as a row (u) and a column (v) to broadcast."""
        c = (np.arange(self.size, dtype=np.float32) - (self.size - 1) / 2) / self.unit
        return c[None, :], c[:, None]


@lru_cache(maxsize=64)
def _canonical(class_id, resolution):
    """Upright RGBA rendering of a class and the convex hull of its opaque pixels.

    Rendered at 2x or more of the largest output size it serves, so that warping it
    down later also antialiases the hard pattern edges. Read-only: it is shared."""
    spec, canvas = object_spec(class_id), _Canvas(resolution)
    mask = np.zeros((resolution, resolution), np.uint8)
    for hole in (False, True):
        polys = [np.round(canvas.px(pts) * 16).astype(np.int32) for pts, h in spec.parts if h == hole]
        if polys:
            cv2.fillPoly(mask, polys, 0 if hole else 255, cv2.LINE_AA, shift=4)
    body, ink = (np.array(COLOURS[c], np.float32) for c in spec.palette)
    rgb = body + (ink - body) * spec.texture(canvas)[..., None]
    if spec.outline is not None:
        width = max(3, round(0.12 * canvas.unit)) | 1
        inner = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
        e = inner[..., None].astype(np.float32) / 255
        rgb = np.float32(spec.outline) * (1 - e) + rgb * e
    rgba = np.dstack([np.rint(rgb).astype(np.uint8), mask])
    hull = cv2.convexHull(cv2.findNonZero((mask >= 128).astype(np.uint8))).reshape(-1, 2).astype(np.float64)
    rgba.flags.writeable = False
    return rgba, hull


def _view_transform(rng, resolution):
    """Random rotation, anisotropic stretch and slight perspective about the canvas centre."""
    c = (resolution - 1) / 2
    angle = rng.uniform(-np.pi, np.pi)
    stretch = float(np.exp(np.clip(rng.normal(0, 0.1), -0.25, 0.25)))
    tilt = rng.uniform(-0.15, 0.15, 2) / (0.4 * resolution)
    centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], float)
    rotate = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    perspective = np.array([[1, 0, 0], [0, 1, 0], [tilt[0], tilt[1], 1]])
    return perspective @ np.diag([stretch, 1 / stretch, 1]) @ rotate @ centre


def _warp_tight(rgba, hull, transform, size):
    """Warp so that the object exactly fills the output, whose longer side is `size`.

    Warps to twice the output and halves with area averaging, since a bilinear warp
    alone aliases when it shrinks."""
    pts = cv2.perspectiveTransform(hull[None], transform)[0]
    lo, extent = pts.min(0), np.maximum(pts.max(0) - pts.min(0), 1e-6)
    out_w, out_h = np.maximum(1, np.rint(size * extent / extent.max())).astype(int)
    sx, sy = (2 * np.array([out_w, out_h]) - 1) / extent
    fit = np.array([[sx, 0, -lo[0] * sx], [0, sy, -lo[1] * sy], [0, 0, 1]])
    big = cv2.warpPerspective(rgba, fit @ transform, (2 * out_w, 2 * out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(big, (out_w, out_h), interpolation=cv2.INTER_AREA)


def _jitter_colours(rgb, rng):
    """Saturation, contrast, brightness and an uneven light across the object."""
    x = rgb.astype(np.float32)
    grey = x @ np.float32([0.299, 0.587, 0.114])
    x = grey[..., None] + (x - grey[..., None]) * rng.uniform(0.7, 1.3)
    x = (x - 128) * rng.uniform(0.8, 1.2) + 128
    h, w = x.shape[:2]
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.3)
    ramp = (np.linspace(-1, 1, w, dtype=np.float32)[None, :] * np.cos(angle)
            + np.linspace(-1, 1, h, dtype=np.float32)[:, None] * np.sin(angle))
    x *= (rng.uniform(0.75, 1.2) * (1 + strength * ramp))[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def render_object(class_id, rng=None, size=64):
    """RGBA uint8 sprite of one view of `class_id`, cropped tight to the object.

    The longer side is `size` pixels; the shorter follows the object's outline in this
    view. With `rng`, the view is randomly rotated, stretched, tilted and recoloured;
    without, it is the upright canonical view."""
    resolution = next((r for r in (64, 128, 256) if r >= 2 * size), 512)
    rgba, hull = _canonical(class_id, resolution)
    if rng is None:
        return _warp_tight(rgba, hull, np.eye(3), size)
    sprite = _warp_tight(rgba, hull, _view_transform(rng, resolution), size)
    sprite[..., :3] = _jitter_colours(sprite[..., :3], rng)
    return sprite


# --------------------------------------------------------------------------- backgrounds
def _random_colour(rng):
    return rng.uniform(30, 225, 3).astype(np.float32)


def _gradient_bg(rng, h, w):
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.linspace(0, 1, w, dtype=np.float32)[None, :] * np.cos(angle)
         + np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.sin(angle))
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    return c0 + (c1 - c0) * t[..., None]


def _clouds_bg(rng, h, w):
    coarse = rng.uniform(30, 225, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _grain_bg(rng, h, w):
    grain = rng.standard_normal((h, w, 3), dtype=np.float32) * rng.uniform(15, 40)
    return _random_colour(rng) + cv2.GaussianBlur(grain, (0, 0), 0.8)


def _bands_bg(rng, h, w):
    """Shelf-like bands of flat colour, horizontal or vertical."""
    horizontal = rng.random() < 0.5
    length = h if horizontal else w
    cuts = np.sort(rng.integers(0, length, int(rng.integers(2, 6))))
    bands = rng.uniform(30, 225, (len(cuts) + 1, 3)).astype(np.float32)[np.searchsorted(cuts, np.arange(length))]
    return np.broadcast_to(bands[:, None] if horizontal else bands[None, :], (h, w, 3)).copy()


_BACKGROUNDS = (_gradient_bg, _clouds_bg, _grain_bg, _bands_bg)


def _add_clutter(img, rng, amount):
    """Distractors that are not objects: lines, scribbles and soft blobs."""
    h, w = img.shape[:2]
    for _ in range(rng.poisson(5 * amount)):
        p0, p1 = rng.integers(0, (w, h), (2, 2))
        cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), _random_colour(rng).tolist(),
                 int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(rng.poisson(2 * amount)):
        walk = np.cumsum(rng.normal(0, min(h, w) / 12, (int(rng.integers(4, 12)), 2)), 0) + rng.uniform(0, (w, h))
        cv2.polylines(img, [np.rint(walk).astype(np.int32)], False, _random_colour(rng).tolist(),
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    blobs = rng.poisson(3 * amount)
    if blobs:
        paint, cover = img.copy(), np.zeros((h, w), np.float32)
        for _ in range(blobs):
            centre = tuple(map(int, rng.integers(0, (w, h))))
            axes = tuple(map(int, rng.integers(3, max(4, min(h, w) // 5), 2)))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(paint, centre, axes, angle, 0, 360, _random_colour(rng).tolist(), -1)
            cv2.ellipse(cover, centre, axes, angle, 0, 360, 1.0, -1)
        sigma = min(h, w) / 30
        a = cv2.GaussianBlur(cover, (0, 0), sigma)[..., None] * rng.uniform(0.3, 0.7)
        img = img * (1 - a) + cv2.GaussianBlur(paint, (0, 0), sigma) * a
    return img


def render_background(rng, shape, clutter=1.0):
    """RGB uint8 background of `shape` (H, W): a gradient, colour clouds, grain or bands,
    with about `clutter` times the usual amount of distractors on top."""
    h, w = shape
    img = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, h, w)
    img = _add_clutter(np.ascontiguousarray(img, np.float32), rng, clutter)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _camera(img, rng):
    """Defocus and sensor noise, applied to the whole composed image."""
    x = img.astype(np.float32)
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x += rng.standard_normal(x.shape, dtype=np.float32) * rng.uniform(1, 6)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _paste(img, sprite, x, y):
    """Alpha-composite `sprite` onto `img` in place with its top-left corner at (x, y)."""
    h, w = sprite.shape[:2]
    roi = img[y:y + h, x:x + w].astype(np.float32)
    a = sprite[..., 3:].astype(np.float32) / 255
    img[y:y + h, x:x + w] = np.rint(roi + (sprite[..., :3] - roi) * a).astype(np.uint8)


def _box(sprite, x, y):
    """[x1, y1, x2, y2] of the sprite's pixels that are at least half object."""
    solid = sprite[..., 3] >= 128
    cols, rows = np.flatnonzero(solid.any(0)), np.flatnonzero(solid.any(1))
    return [float(x + cols[0]), float(y + rows[0]), float(x + cols[-1] + 1), float(y + rows[-1] + 1)]


def _place(rng, sprite, shape):
    """Random top-left corner that keeps the sprite inside an image of `shape` (H, W)."""
    h, w = sprite.shape[:2]
    return int(rng.integers(0, shape[1] - w + 1)), int(rng.integers(0, shape[0] - h + 1))


# --------------------------------------------------------------------------- file output
@dataclass(frozen=True)
class Written:
    """What a generator wrote: the image count and the index files, relative to root."""
    root: Path
    num_images: int
    files: tuple

    def __str__(self):
        return f"{self.num_images} images under {self.root}; index files: {', '.join(self.files)}"


def _save_jpeg(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())


def _write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


# --------------------------------------------------------------------------- recognition set
def render_view(class_id, rng, image_size):
    """One square training/query image: a random view of the object on a background.

    The object spans 55-90% of the side, so it dominates the image as it would in a
    detector's crop, while the background still varies."""
    img = render_background(rng, (image_size, image_size), clutter=0.5)
    sprite = render_object(class_id, rng, round(image_size * rng.uniform(0.55, 0.9)))
    _paste(img, sprite, *_place(rng, sprite, img.shape))
    return _camera(img, rng)


def make_recognition_set(root, num_classes=DEFAULT_NUM_CLASSES, views_per_class=8, image_size=96,
                         num_train_classes=None, gallery_views=2, seed=0):
    """Write an open-set recognition set: train and test classes are disjoint.

    Defaults (60 classes x 8 views at 96 px, 40 train classes) keep a CPU epoch to
    seconds while leaving enough pixels for patterns to matter; the 20 test classes give
    40 gallery and 120 query images. `num_train_classes` defaults to two thirds.

    Writes under `root`:
      images/class_NNNN/VVV.jpg
      train_list.txt, test_list.txt   PaddleClas `relpath label uid`; labels are class ids
      class_names.txt                 `label<TAB>name` for every class
      gallery_list.txt, query_list.txt  PP-ShiTu `relpath<TAB>name`, test classes only:
                                      the first `gallery_views` views of each go to the gallery
    """
    root = Path(root)
    num_train = num_classes * 2 // 3 if num_train_classes is None else num_train_classes
    if not 0 < num_train < num_classes:
        raise ValueError(f"num_train_classes must be in [1, {num_classes - 1}], got {num_train}")
    if not 0 < gallery_views < views_per_class:
        raise ValueError(f"gallery_views must be in [1, views_per_class - 1], got {gallery_views}")
    rows = []
    items = itertools.product(range(num_classes), range(views_per_class))
    for uid, (label, view) in enumerate(tqdm(items, total=num_classes * views_per_class, desc="recognition set",
                                             unit="img")):
        rel = f"images/class_{label:04d}/{view:03d}.jpg"
        _save_jpeg(root / rel, render_view(label, _rng(seed, "recognition", label, view), image_size))
        rows.append((rel, label, view, uid))
    test = [r for r in rows if r[1] >= num_train]
    lists = {
        "train_list.txt": [f"{rel} {label} {uid}" for rel, label, _, uid in rows if label < num_train],
        "test_list.txt": [f"{rel} {label} {uid}" for rel, label, _, uid in test],
        "class_names.txt": [f"{label}\t{class_name(label)}" for label in range(num_classes)],
        "gallery_list.txt": [f"{rel}\t{class_name(label)}" for rel, label, view, _ in test if view < gallery_views],
        "query_list.txt": [f"{rel}\t{class_name(label)}" for rel, label, view, _ in test if view >= gallery_views],
    }
    for name, lines in lists.items():
        _write_lines(root / name, lines)
    return Written(root, len(rows), tuple(lists))


# --------------------------------------------------------------------------- mini CUB
# 20 x 10 plausible names in CUB's spelling; class 1 is 001.Black_footed_Albatross as in the real set.
_CUB_ADJECTIVES = ("Black_footed", "Laysan", "Sooty", "Crested", "Red_winged", "Yellow_headed", "Rusty",
                   "Brewer", "Painted", "Indigo", "Lazuli", "Gray_crowned", "Spotted", "Bronzed", "Cape_May",
                   "Least", "Pied_billed", "Scarlet", "Tree", "White_throated")
_CUB_BIRDS = ("Albatross", "Auklet", "Blackbird", "Bunting", "Cormorant", "Flycatcher", "Gull", "Sparrow",
              "Warbler", "Wren")


def cub_class_dirs():
    """The 200 class directory names, `%03d.Name`, in class id order."""
    names = [f"{adj}_{bird}" for bird in _CUB_BIRDS for adj in _CUB_ADJECTIVES]
    return [f"{i:03d}.{name}" for i, name in enumerate(names, 1)]


def _cub_image(class_index, rng, image_size):
    """A CUB-like photo: landscape mostly, longer side `image_size`, one large object."""
    long_side, short_side = image_size, round(image_size * rng.uniform(0.65, 1.0))
    shape = (short_side, long_side) if rng.random() < 0.8 else (long_side, short_side)
    img = render_background(rng, shape, clutter=0.7)
    sprite = render_object(class_index, rng, round(min(shape) * rng.uniform(0.45, 0.9)))
    x, y = _place(rng, sprite, shape)
    _paste(img, sprite, x, y)
    return _camera(img, rng), _box(sprite, x, y)


def make_mini_cub(root, images_per_class=3, image_size=128, seed=0):
    """Write `root/CUB_200_2011` with the real data set's layout and index files.

    images/NNN.Name/Name_With_Caps_KKKK_ID.jpg, images.txt, classes.txt,
    image_class_labels.txt, train_test_split.txt (about half of each class is train)
    and bounding_boxes.txt (`id x y width height`, the true object box); ids are
    1-based and in the real files' order (by class, then file name). Class c shows
    object class c-1 of `render_object`."""
    base = Path(root) / "CUB_200_2011"
    images, labels, split, boxes = [], [], [], []
    progress = tqdm(total=200 * images_per_class, desc="mini CUB", unit="img")
    for class_id, class_dir in enumerate(cub_class_dirs(), 1):
        stem = "_".join(word.capitalize() for word in class_dir[4:].split("_"))
        is_train = _rng(seed, "cub-split", class_id).permutation(images_per_class) < (images_per_class + 1) // 2
        for k in range(images_per_class):
            image_id = len(images) + 1
            rng = _rng(seed, "cub", image_id)
            rel = f"{class_dir}/{stem}_{k + 1:04d}_{rng.integers(1, 800000)}.jpg"
            img, (x1, y1, x2, y2) = _cub_image(class_id - 1, rng, image_size)
            _save_jpeg(base / "images" / rel, img)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {int(is_train[k])}")
            boxes.append(f"{image_id} {x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f}")
            progress.update()
    progress.close()
    lists = {
        "images.txt": images,
        "classes.txt": [f"{i} {d}" for i, d in enumerate(cub_class_dirs(), 1)],
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "bounding_boxes.txt": boxes,
    }
    for name, lines in lists.items():
        _write_lines(base / name, lines)
    return Written(base, len(images), tuple(lists))


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class SceneObject:
    """One pasted object: its class and its box in the project's [x1, y1, x2, y2] convention."""
    class_id: int
    box: list                # [x1, y1, x2, y2] pixels


@dataclass(frozen=True)
class Scene:
    """A rendered scene; `background` lets callers see exactly what the objects changed."""
    image: np.ndarray        # RGB uint8, what is saved
    background: np.ndarray   # the same scene before objects were pasted and the camera applied
    objects: tuple


def _area(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersections(box, boxes):
    """Intersection areas of `box` with each row of `boxes` (N x 4, x1 y1 x2 y2)."""
    lo, hi = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:], box[2:])
    return np.prod(np.clip(hi - lo, 0, None), axis=1)


# scikit-image's sample photographs (skimage.data, shipped in its wheel): real-world backgrounds
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "cat", "colorwheel", "logo", "motorcycle_left", "motorcycle_right", "page", "camera", "moon", "coins",
          "grass", "gravel", "brick", "text", "clock", "horse")


@lru_cache(maxsize=None)
def _photos():
    """The sample photos that load, as RGB uint8 (grey ones stacked); some need an optional download."""
    from skimage import data

    out = []
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001  (a photo that is fetched on demand, or absent in this version)
            continue
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    if not out:
        raise RuntimeError("no scikit-image sample photo could be read (pip install scikit-image)")
    return tuple(out)


def photo_background(rng, shape):
    """A random crop of a real photograph, resized to `shape` (H, W), randomly flipped (the crop that
    crop-like calibration queries are pasted on, too)."""
    from ppshitu.gallery.crop_queries import photo_crop

    return photo_crop(rng, _photos(), shape)


def render_scene(rng, image_size, object_classes, num_objects, max_overlap=0.25, photo_backgrounds=False):
    """A cluttered scene with exactly `num_objects` objects drawn from `object_classes`.

    Each object's longer side is 15-60% of the shorter image side. Objects are pasted
    in turn; a new one must not bring the hidden part of any earlier box (summed over
    the objects on top of it) above `max_overlap`, nor overlap more than that of its
    own box. One that does not fit is retried at other places, then smaller."""
    shape = tuple(image_size)
    side = min(shape)
    background = photo_background(rng, shape) if photo_backgrounds else render_background(rng, shape, clutter=1.5)
    image, boxes, hidden, objects = background.copy(), np.zeros((0, 4)), np.zeros(0), []
    for _ in range(num_objects):
        class_id = int(object_classes[rng.integers(len(object_classes))])
        fraction = rng.uniform(0.15, 0.6)
        for attempt in range(80):
            if attempt % 10 == 0:
                size = max(round(0.15 * side), round(side * fraction * 0.8 ** (attempt // 10)))
                sprite = render_object(class_id, rng, size)
            x, y = _place(rng, sprite, shape)
            box = np.array(_box(sprite, x, y))
            inter = _intersections(box, boxes)
            if np.all(hidden + inter <= max_overlap * _area(boxes)) and inter.sum() <= max_overlap * _area(box):
                break
        else:
            raise RuntimeError(f"cannot place {num_objects} objects in a {shape[0]}x{shape[1]} image without "
                               f"hiding more than {max_overlap:.0%} of one; ask for fewer or a larger image")
        _paste(image, sprite, x, y)
        boxes, hidden = np.vstack([boxes, box]), np.append(hidden + inter, 0.0)
        objects.append(SceneObject(class_id, box.tolist()))
    return Scene(_camera(image, rng), background, tuple(objects))


def make_scenes(root, num_images=40, image_size=(240, 320), objects_per_image=(1, 5), object_classes=None,
                seed=0, split="train", photo_backgrounds=False):
    """Write one split of detection scenes: `root/images/<split>_NNNNNN.jpg` and `root/<split>.json`.

    The json is COCO with a single category 1 'foreground' (what a mainbody detector
    learns); each annotation also carries the object's `object_label` (class id) and
    `object_name`, for recognition checks. `object_classes` (default: the first 60
    class ids) are the classes that may appear: pass test classes, some of them
    absent from the gallery, to exercise unknown rejection. `objects_per_image` is an
    inclusive (min, max) range; (n, n) gives exactly n. The split name is part of the
    generator key, so train and val differ even with the same seed. `photo_backgrounds`: paste the
    objects on crops of real photographs (scikit-image's samples) instead of generated clutter: True for
    every scene, a number in [0, 1] for that share of them."""
    root = Path(root)
    classes = list(range(DEFAULT_NUM_CLASSES) if object_classes is None else object_classes)
    lo, hi = objects_per_image
    if not classes:
        raise ValueError("object_classes is empty")
    if not 1 <= lo <= hi:
        raise ValueError(f"objects_per_image must be (min, max) with 1 <= min <= max, got {objects_per_image}")
    height, width = image_size
    coco = {"info": {"description": "ppshitu synthetic scenes", "split": split, "seed": seed},
            "images": [], "annotations": [], "categories": [{"id": 1, "name": "foreground"}]}
    for image_id in tqdm(range(1, num_images + 1), desc=f"scenes {split}", unit="img"):
        rng = _rng(seed, f"scenes/{split}", image_id)
        # no draw unless a share is asked for, so scenes without photographs stay as they always were
        photo = photo_backgrounds is True or (bool(photo_backgrounds) and rng.random() < float(photo_backgrounds))
        scene = render_scene(rng, (height, width), classes, int(rng.integers(lo, hi + 1)), photo_backgrounds=photo)
        file_name = f"{split}_{image_id:06d}.jpg"
        _save_jpeg(root / "images" / file_name, scene.image)
        coco["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                "object_label": obj.class_id, "object_name": class_name(obj.class_id)})
    (root / f"{split}.json").write_text(json.dumps(coco, indent=1), encoding="utf-8")
    return Written(root, num_images, (f"{split}.json",))
