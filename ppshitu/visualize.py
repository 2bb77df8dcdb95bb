"""Labelled boxes drawn on images (RGB uint8 in, RGB uint8 out).

The label font is found without relative paths: `font_path` if given, else a system
font (CJK-capable Noto / WenQuanYi first, then DejaVu), else matplotlib's bundled
DejaVuSans, else PIL's built-in bitmap font.
"""
import colorsys
import functools
import glob
import hashlib
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import PPShiTuError
from .utils.image import as_rgb_uint8

UNKNOWN = "unknown"
UNKNOWN_COLOUR = (160, 160, 160)
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
                    os.path.expanduser("~/.local/share/fonts"), "/Library/Fonts", "/System/Library/Fonts",
                    "C:/Windows/Fonts")
# Preferred font file names, best first: these show CJK as well as Latin text.
PREFERRED_FONTS = ("notosanscjk", "notoserifcjk", "wqy-microhei", "wqy-zenhei", "droidsansfallback",
                   "dejavusans.ttf")


class FontError(PPShiTuError, FileNotFoundError):
    """A requested font file is missing or unreadable."""


def _system_fonts():
    found = []
    for d in SYSTEM_FONT_DIRS:
        if os.path.isdir(d):
            for ext in ("ttf", "ttc", "otf", "TTF", "TTC", "OTF"):
                found += glob.glob(os.path.join(d, "**", f"*.{ext}"), recursive=True)
    return sorted(set(found))


def _rank(path):
    name = os.path.basename(path).lower()
    for i, key in enumerate(PREFERRED_FONTS):
        if name.startswith(key) or name == key:
            return i
    return None


def _is_styled(path):
    name = os.path.basename(path).lower()
    return any(k in name for k in ("bold", "italic", "oblique", "light", "thin", "black", "medium", "mono"))


@functools.lru_cache(maxsize=None)
def find_font(font_path=None):
    """Absolute path of the label font, or None when only PIL's built-in font is left.

    A given `font_path` must exist (FontError naming it otherwise)."""
    if font_path:
        path = os.path.abspath(os.path.expanduser(str(font_path)))
        from .utils.files import check_input_file

        check_input_file(path, f"font_path {font_path}:", FontError,  # a FIFO or a device is said to be one
                         missing=f"font_path {font_path}: no such font file (give a .ttf/.ttc/.otf file, "
                                 f"or leave Global.font_path empty to use a system font)")
        return path
    ranked = sorted((r, _is_styled(p), p) for p in _system_fonts() if (r := _rank(p)) is not None)
    if ranked:
        return ranked[0][2]
    try:
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        if os.path.isfile(path):
            return os.path.abspath(path)
    except ImportError:
        pass
    return None


@functools.lru_cache(maxsize=64)
def load_font(font_path=None, size=14):
    """The PIL font for labels (see find_font); PIL's default font as the last resort."""
    path = find_font(font_path)
    if path is None:
        return ImageFont.load_default()
    try:
        return ImageFont.truetype(path, size)
    except OSError as e:
        raise FontError(f"font {path}: cannot load it as a TrueType/OpenType font ({e})") from None


def label_colour(label):
    """A bright colour, stable per label across runs (not Python's salted hash); grey for unknown."""
    if label is None or str(label) == UNKNOWN:
        return UNKNOWN_COLOUR
    h = int.from_bytes(hashlib.md5(str(label).encode("utf-8", "surrogatepass")).digest()[:4], "little")
    r, g, b = colorsys.hsv_to_rgb((h % 360) / 360.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def drawable(text):
    """Text as it is drawn (labels, captions, titles): utils/text.printable's one line -- a newline, a tab or
    a control character would break PIL's layout ("can't measure length of multiline text") or the picture."""
    from .utils.text import printable

    return printable(text)


def draw_results(image_rgb, results, font_path=None):
    """Draw each result's box and "label score" on a copy of `image_rgb`; returns RGB uint8.

    `results`: dicts with "bbox" [x1, y1, x2, y2], "rec_docs" (label or "unknown"), "rec_scores"."""
    image_rgb = as_rgb_uint8(image_rgb)
    h, w = image_rgb.shape[:2]
    im = Image.fromarray(image_rgb)
    draw = ImageDraw.Draw(im)
    size = max(10, min(32, round(min(h, w) / 25)))
    font = load_font(font_path, size)
    thick = max(1, round(min(h, w) / 250))
    for r in results:
        x1, y1, x2, y2 = (float(v) for v in r["bbox"])
        x1, x2 = sorted((min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)))
        y1, y2 = sorted((min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)))
        label = str(r.get("rec_docs", UNKNOWN))
        colour = label_colour(label)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=thick)
        score = r.get("rec_scores")
        text = drawable(label) if score is None else f"{drawable(label)} {float(score):.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((0, 0), text, font=font)
        tw, th = tx2 - tx1 + 4, ty2 - ty1 + 4
        ty = y1 - th if y1 - th >= 0 else y1  # above the box, inside it at the top edge
        tx = min(x1, max(0, w - tw))
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=colour)
        draw.text((tx + 2 - tx1, ty + 2 - ty1), text, fill=(0, 0, 0), font=font)
    return np.asarray(im, dtype=np.uint8).copy()


def save_image(path, rgb, guard=None, **save_options):
    """Write an RGB uint8 image (format from the extension), creating the folder; through `guard` (an
    ppshitu.utils.outputs.OutputGuard) when given, else one for the image's folder: never over a file
    ppshitu did not write (OutputError naming it). Returns the path."""
    from .utils.outputs import OutputGuard

    if guard is not None:
        return guard.write_image(path, rgb, **save_options)
    with OutputGuard(os.path.dirname(os.path.abspath(os.fspath(path)))) as own:
        return own.write_image(path, rgb, **save_options)


def output_paths(inputs, output_dir, root=None):
    """Where the drawing of each input image goes: `output_dir` + the input's path relative to
    `root` (default: the inputs' deepest common folder), so two inputs with the same name in
    different folders keep distinct drawings (any clash left gets a -2, -3, ... suffix).

    Refuses (PPShiTuError) when a drawing would land on one of the inputs, e.g. with output_dir
    set to the input folder: ppshitu never writes over a user's image."""
    absolute = [os.path.abspath(os.fspath(p)) for p in inputs]
    if not absolute:
        return []
    if root is None:
        root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    root = os.path.abspath(os.fspath(root))
    real_inputs = {os.path.realpath(p): p for p in absolute}
    out, used = [], {}  # drawing -> the input it is for
    for src, given in zip(absolute, inputs):
        rel = os.path.relpath(src, root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            rel = os.path.join("_outside", src.lstrip(os.sep))
        dst = os.path.join(os.path.abspath(os.fspath(output_dir)), rel)
        stem, ext = os.path.splitext(dst)
        n = 1
        while used.get(dst, src) != src:  # the same input listed twice keeps its one drawing
            n += 1
            dst = f"{stem}-{n}{ext}"
        hit = real_inputs.get(os.path.realpath(dst))
        if hit is not None:
            raise PPShiTuError(f"Global.output_dir {output_dir}: the drawing of {given} would overwrite the input "
                               f"image {hit}; choose an output_dir outside the input folder (or "
                               f"-o Global.save_visual=False)")
        used[dst] = src
        out.append(dst)
    return out
