"""Image reading: every ppshitu API takes RGB uint8 HxWx3 numpy arrays.

`read_image(path)` and `decode_image(data, where)` are the one decoder every reader uses (gallery
building, queries, evaluation, training data, the service). Before any pixel is decoded, the
header's width x height is checked against a pixel limit: a 1 MB PNG can declare 20000 x 20000
pixels (1.2 GB of RGB, several GB while decoding). The limit, first match wins:

1. `max_pixels=` given to the call (the tools pass `Global.max_image_pixels` when it is set);
2. `set_max_image_pixels(n)` (module-wide; `None` goes back to 3.);
3. the environment variable `PPSHITU_MAX_IMAGE_PIXELS`;
4. `DEFAULT_MAX_IMAGE_PIXELS` (40 megapixels).

`min_side=` asks for a cheaper decode when the caller resizes down anyway: a JPEG whose shorter side
is at least 2x `min_side` is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (the largest that keeps its
shorter side >= `min_side`), which skips most of the inverse DCT, colour conversion and the resize
after it. Other formats decode in full. Only whole-image embeddings use it (a gallery built without
detection, the library tools): a detector's crops need the full image.

Files: `open_image_file(path)` is the one way an image FILE is opened (read_image, the folder
scan's content hashing, pHashes, report thumbnails), through utils/files.py's `open_regular` (which
opens every other input too: configs, lists, JSON). It accepts regular files only (a symbolic link
to one is fine): a FIFO would block the reader forever, a device (`z.jpg -> /dev/zero`) would be read
without end. It checks with stat() before opening (opening a device can itself do something), opens
with O_NONBLOCK (so that a FIFO swapped in meanwhile cannot block the open) and checks the opened
descriptor again with fstat() (what is read is what was checked). It reads at most
`max_image_bytes()`, derived from the pixel limit (see there). Refusals are ImageReadError naming
the file and why: "not a regular file (FIFO)", "larger than N bytes (limit from Global.max_image_pixels)".

Recognition also needs some pixels to work with: `check_recognisable` refuses images with a side
shorter than `MIN_IMAGE_SIDE`, and `is_uniform` tells a crop with (near) no detail (blank, all
black) — the system reports those "unknown" instead of the confident nonsense a CNN makes of them.
"""
import io
import logging
import os
import struct
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PPShiTuError
from .files import (MAX_LIST_BYTES, NotRegularError, TooLargeError, not_regular_reason,  # noqa: F401 (re-exported)
                    open_regular, read_input_text)
from .lists import backslash_hint, read_list_lines

# the one set of file extensions read as images: folder scans (index_folder, find_duplicates), directory
# and list inputs (predict_system, the `path label` split of list lines), the service's stored uploads; the
# decoder (OpenCV, PIL for the header) reads every one of them -- JPEG under all its names, GIF (its first
# frame), Windows DIB, the Netpbm formats -- and nothing that is read by content (search --image,
# similarity, the service) reads anything else
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
                    ".pbm", ".pgm", ".ppm", ".pnm")
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000   # 40 MP: 120 MB as RGB; e.g. 8000 x 5000
MAX_PIXELS_ENV = "PPSHITU_MAX_IMAGE_PIXELS"
MIN_IMAGE_SIDE = 8        # px; below this there is nothing to recognise (a 1x1 image was "recognised" at 0.88)
UNIFORM_STD = 1.0         # per-channel pixel std (0-255) of a 32x32 thumbnail below which a crop is blank
# The most bytes an image file may have: BYTES_PER_PIXEL x the pixel limit + IMAGE_BYTES_SLACK. An
# image within the pixel limit takes at most ~8 bytes per pixel on disk (uncompressed 16-bit RGBA:
# TIFF or an uncompressed PNG; BMP is <= 4, a JPEG ~0.1-1), and its metadata (EXIF and its thumbnail,
# ICC profile, XMP) rarely reaches a few MB: so every image the pixel limit accepts is accepted, while a
# file that is no image of that size (a disk image named .jpg, a growing log) is never read whole:
# 8 x 40 MP + 16 MiB = 336 MB at the default limit. The limit follows Global.max_image_pixels, so one
# setting raises both.
BYTES_PER_PIXEL = 8
IMAGE_BYTES_SLACK = 16 << 20

_max_pixels = None        # set_max_image_pixels()
# The pixel limit below replaces PIL's decompression-bomb warning (89 MP, which our lower default
# refuses anyway, or which a user raised the limit past on purpose). A module-level filter, because
# warnings.catch_warnings() is not thread-safe and images are decoded in worker threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(PPShiTuError, OSError):
    """An image file is missing, unreadable or not an image."""


class ImageTooLargeError(ImageReadError):
    """The image declares more pixels than the configured limit (refused before decoding)."""


class ImageFileTooLargeError(ImageTooLargeError):
    """The image file has more bytes than any image within the pixel limit needs (refused unread)."""


class NotRegularFileError(ImageReadError):
    """The path is a FIFO, a device, a socket or a directory (or a symbolic link to one), not a file."""


class ImageTooSmallError(ImageReadError):
    """The image is too small to recognise anything in it."""


def set_max_image_pixels(limit):
    """Module-wide pixel limit for every reader (None: the environment variable, else the default)."""
    global _max_pixels
    _max_pixels = None if limit is None else _positive(limit, "max_image_pixels")


def max_image_pixels():
    """The limit in force (see the module docstring)."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        return _positive(env, f"environment variable {MAX_PIXELS_ENV}")
    return DEFAULT_MAX_IMAGE_PIXELS


def max_image_bytes(max_pixels=None):
    """The most bytes read from one image file: BYTES_PER_PIXEL x the pixel limit (`max_pixels`, else
    the one in force) + IMAGE_BYTES_SLACK (see there for why)."""
    limit = _positive(max_pixels, "max_pixels") if max_pixels is not None else max_image_pixels()
    return BYTES_PER_PIXEL * limit + IMAGE_BYTES_SLACK


def _too_many_bytes(path, size, limit):
    return ImageFileTooLargeError(
        f"cannot read image {path}: larger than {limit} bytes (limit from Global.max_image_pixels: "
        f"{BYTES_PER_PIXEL} bytes per pixel + {IMAGE_BYTES_SLACK >> 20} MiB); "
        f"{'it grew past that while read' if size is None else f'it has {size} bytes'}; {_RAISE_IT}")


def open_image_file(path, max_pixels=None, max_bytes=None):
    """The binary file object of the image file `path`, opened for reading (the caller closes it);
    regular files only, at most `max_bytes` (default: max_image_bytes(max_pixels)) long. Raises
    ImageReadError naming the file and why (NotRegularFileError, ImageFileTooLargeError). See the
    module docstring; read_image_bytes / image_file_chunks also keep to the limit while reading (a
    file may grow after it was opened)."""
    return _open_checked(path, max_image_bytes(max_pixels) if max_bytes is None else int(max_bytes))


def _other_spelling(path):
    """The path of an existing file whose name is `path` in the other Unicode form (NFC <-> NFD), or None: a
    list written on macOS spells café.jpg decomposed, the file on Linux may be composed (or the other way);
    the two look the same, so 'No such file' would be a riddle."""
    import unicodedata

    p = os.fspath(path)
    if not isinstance(p, str) or p.isascii():
        return None
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, p)
        if other != p and os.path.lexists(other):
            return other
    return None


def _open_checked(path, limit):
    """files.open_regular (stat, O_NONBLOCK open, fstat: regular files only, at most `limit` bytes), its
    refusals as ImageReadError naming the image. A missing name found in the other Unicode form is read there."""
    try:
        try:
            return open_regular(path, limit)
        except FileNotFoundError:
            other = _other_spelling(path)
            if other is None:
                raise
            return open_regular(other, limit)
    except NotRegularError as e:
        raise NotRegularFileError(f"cannot read image {path}: {e.reason}") from None
    except TooLargeError as e:
        raise _too_many_bytes(path, e.size, limit) from None
    except (OSError, ValueError) as e:
        raise ImageReadError(f"cannot read image {path}: {getattr(e, 'strerror', None) or e}"
                             f"{backslash_hint(path)}") from None


def read_image_bytes(path, max_pixels=None, max_bytes=None):
    """The content of the image file `path` (open_image_file's checks; at most its byte limit)."""
    limit = max_image_bytes(max_pixels) if max_bytes is None else int(max_bytes)
    with _open_checked(path, limit) as f:
        size = os.fstat(f.fileno()).st_size
        # one read of the whole file (+1 byte: one that grew since is noticed); join() of one chunk copies nothing
        return b"".join(_chunks(f, path, limit, size + 1))


def image_file_chunks(path, chunk_size=1 << 20, max_pixels=None, max_bytes=None):
    """The content of the image file `path` in chunks (content hashing); open_image_file's checks, and
    ImageFileTooLargeError past its byte limit."""
    limit = max_image_bytes(max_pixels) if max_bytes is None else int(max_bytes)
    with _open_checked(path, limit) as f:
        yield from _chunks(f, path, limit, chunk_size)


def _chunks(f, path, limit, chunk_size):
    total = 0
    while True:
        try:
            chunk = f.read(min(chunk_size, limit + 1 - total))
        except OSError as e:
            raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None
        if not chunk:
            return
        total += len(chunk)
        if total > limit:  # it grew since it was opened
            raise _too_many_bytes(path, None, limit)
        yield chunk


def _positive(value, where):
    """A pixel count >= 1 from an int or a string like "40000000" / "40_000_000"."""
    n = 0
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value.strip())
        except ValueError:
            pass
    if n < 1:
        raise PPShiTuError(f"{where} must be a positive number of pixels, got {value!r}")
    return n


_RAISE_IT = (f"to accept it, raise the limit: -o Global.max_image_pixels=N (config) or the "
             f"{MAX_PIXELS_ENV} environment variable")


def _limit_message(where, width, height, limit):
    return (f"{where}: {width} x {height} pixels ({width * height / 1e6:.1f} MP) is more than the limit of "
            f"{limit} pixels ({limit / 1e6:.1f} MP); refused before decoding; {_RAISE_IT}")


def _header_size(buf, where):
    """(width, height) from the header alone (PIL's open is lazy: no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(buf)) as im:
            return im.size
    except Image.DecompressionBombError:
        # past PIL's own limit (2 x PIL.Image.MAX_IMAGE_PIXELS, ~179 MP): read the header again,
        # through the same plugins without PIL's check, so that ours decides (and names the size)
        return _header_size_unchecked(buf, where)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        raise ImageReadError(f"cannot decode image {where} (empty, truncated or not an image)") from None


def _header_size_unchecked(buf, where):
    Image.init()
    prefix = bytes(buf[:16])
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and accept(prefix) is not True:
            continue
        try:
            return factory(io.BytesIO(buf), "").size
        except Exception:  # noqa: BLE001 - not this format: try the next plugin, as PIL's open does
            continue
    raise ImageReadError(f"cannot decode image {where} (empty, truncated or not an image)")


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _decode_flag(buf, width, height, min_side):
    """cv2's decode flag: a libjpeg DCT-scaled decode when the JPEG is large enough (module docstring).
    The shorter side decides, so that an EXIF rotation (applied by cv2 after decoding) changes nothing."""
    if min_side and buf[:2].tobytes() == b"\xff\xd8":
        for factor, flag in _REDUCED:
            if min(width, height) // factor >= min_side:
                return flag
    return cv2.IMREAD_COLOR


def decode_image(data, where="image", max_pixels=None, min_side=None):
    """Encoded image bytes (a file's content, an upload) -> RGB uint8 HxWx3 (at a reduced scale with
    `min_side`, for JPEGs of at least twice that shorter side: module docstring).

    Raises ImageReadError naming `where` if the bytes are not an image, ImageTooLargeError if the
    header declares more than the pixel limit (checked before decoding)."""
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(data, dtype=np.uint8)
    else:
        raise ImageReadError(f"{where}: expected encoded image bytes, got {type(data).__name__}")
    if not buf.size:
        raise ImageReadError(f"cannot decode image {where} (empty, truncated or not an image)")
    limit = _positive(max_pixels, "max_pixels") if max_pixels is not None else max_image_pixels()
    width, height = _header_size(buf, where)
    if width * height > limit:
        raise ImageTooLargeError(_limit_message(where, width, height, limit))
    img = cv2.imdecode(buf, _decode_flag(buf, width, height, min_side))
    if img is None:
        raise ImageReadError(f"cannot decode image {where} (empty, truncated or not an image)")
    if img.shape[0] * img.shape[1] > limit:  # a header PIL and OpenCV read differently
        raise ImageTooLargeError(_limit_message(where, img.shape[1], img.shape[0], limit))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path, max_pixels=None, min_side=None):
    """Decode `path` to RGB uint8; raise ImageReadError naming the file if it cannot
    (ImageTooLargeError past the pixel limit; `min_side`: a reduced decode; see the module docstring)."""
    # bytes, then decode: handles non-ASCII paths on every OS; regular files only, at most the byte limit
    data = read_image_bytes(path, max_pixels)
    return decode_image(data, str(path), max_pixels, min_side)


def check_recognisable(rgb, where="image", min_side=MIN_IMAGE_SIDE):
    """Refuse an image too small to recognise anything in (ImageTooSmallError naming it)."""
    h, w = rgb.shape[:2]
    if min_side and min(h, w) < min_side:
        raise ImageTooSmallError(f"{where}: {w} x {h} pixels is too small to recognise (each side must be at "
                                 f"least {min_side} px, Global.min_image_side)")
    return rgb


def is_uniform(rgb, min_std=UNIFORM_STD):
    """True when the image has (almost) no detail: every channel's pixel std on a 32x32 area-averaged
    thumbnail is below `min_std` (0-255 scale). Blank, all-black and flat-colour images are; a
    photographed object, texture or gradient is not. `min_std` 0 turns the test off."""
    if not min_std:
        return False
    h, w = rgb.shape[:2]
    thumb = cv2.resize(rgb, (min(w, 32), min(h, 32)), interpolation=cv2.INTER_AREA) if max(h, w) > 32 else rgb
    return bool(thumb.reshape(-1, thumb.shape[-1]).std(axis=0).max() < min_std)


def as_rgb_uint8(image, where="image"):
    """Validate an in-memory image (HxWx3 uint8, or HxW grayscale which is expanded)."""
    if not isinstance(image, np.ndarray):
        raise PPShiTuError(f"{where}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise PPShiTuError(f"{where}: expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise PPShiTuError(f"{where}: expected uint8 pixels, got {image.dtype}")
    return image


def _list_entry(line, root):
    """A list file's line -> the image path. The whole stripped line is the path (paths may contain
    spaces); a tab ends it (`path<TAB>label`, as in gallery lists). For PaddleClas-style
    `path label` lines, the part before the first space is taken only when the whole line is not
    an existing file and that part is an existing image file (named with an image extension).
    The path is normalised (os.path.normpath: `./a.jpg`, `x//a.jpg`, `x/../a.jpg` are spelt once)."""
    entry = line.strip()
    if "\t" in entry:
        entry = entry.split("\t", 1)[0].strip()

    def resolve(p):
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p))
    if " " in entry and not os.path.isfile(resolve(entry)):
        head = entry.split(" ", 1)[0]
        if head.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(resolve(head)):
            return resolve(head)
    return resolve(entry)


def _list_folder(path):
    """The image files under the folder `path`, recursively. What is left out is said, never passed over in
    silence: files not named as images (counted), folders that cannot be listed (permission denied: named,
    with the reason; the folder itself unlistable is an error) and symbolic links to folders (not followed)."""
    unlisted, links, names = [], [], []

    def walk_error(e):
        unlisted.append(f"{e.filename} ({e.strerror or e})")

    for d, dirs, files in os.walk(path, onerror=walk_error):
        links += [os.path.join(d, x) for x in dirs if os.path.islink(os.path.join(d, x))]
        names += [os.path.join(d, f) for f in files]
    log = logging.getLogger("ppshitu")
    if unlisted and unlisted[0].startswith(f"{path} ("):
        raise ImageReadError(f"{path}: cannot be listed: {unlisted[0][len(path) + 2:-1]}")
    found = [p for p in names if p.lower().endswith(IMAGE_EXTENSIONS)]
    if unlisted:
        log.warning("%s: %d folder(s) could not be listed, their images skipped: %s", path, len(unlisted),
                    "; ".join(unlisted[:5]) + ("; ..." if len(unlisted) > 5 else ""))
    if links:
        log.warning("%s: %d symbolic link(s) to folders not followed (give them as their own folder): %s", path,
                    len(links), ", ".join(links[:5]) + (", ..." if len(links) > 5 else ""))
    if not found:
        raise ImageReadError(f"{path}: directory holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if len(found) < len(names):  # every file left out is counted, never passed over in silence
        log.warning("%s: %d of %d files skipped, not named as images (%s)", path, len(names) - len(found),
                    len(names), " ".join(IMAGE_EXTENSIONS))
    return sorted(found)


def list_images(path):
    """An image file, a directory (searched recursively) or a list file (one image per line, the
    whole line, relative to the list's folder; `path<TAB>label` lines are accepted; blank and `#` comment
    lines left out: utils/lists.py) -> paths."""
    path = str(path)
    if os.path.isdir(path):
        return _list_folder(path)
    if not os.path.isfile(path):
        why = not_regular_reason(path) if os.path.lexists(path) else None  # a FIFO, a device: said so
        raise ImageReadError(f"{path}: {why or 'no such image, directory or list file'}")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return [path]
    root = os.path.dirname(os.path.abspath(path))
    entries = [_list_entry(line, root) for _, line in read_list_lines(path, ImageReadError)]
    if not entries:
        raise ImageReadError(f"{path}: the list file names no images")
    return entries
