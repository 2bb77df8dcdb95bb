"""Image reading: every ppshitu API takes RGB uint8 HxWx3 numpy arrays."""
import cv2
import numpy as np

from ..errors import PPShiTuError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(PPShiTuError, OSError):
    """An image file is missing, unreadable or not an image."""


def read_image(path):
    """Decode `path` to RGB uint8; raise ImageReadError naming the file if it cannot."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile+imdecode handles non-ASCII paths
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode image {path} (empty, truncated or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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


def list_images(path):
    """An image file, a directory (searched recursively) or a list file (one path per line,
    optionally followed by a tab/space and a label; relative to the list's folder) -> paths."""
    import os

    path = str(path)
    if os.path.isdir(path):
        found = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise ImageReadError(f"{path}: directory holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        return sorted(found)
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such image, directory or list file")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return [path]
    root = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        entries = [line.strip().split("\t")[0].split(" ")[0] for line in f if line.strip()]
    return [e if os.path.isabs(e) else os.path.join(root, e) for e in entries]
