"""Image transforms with PaddleClas's names and keys (`transform_ops` lists).

Images enter as RGB uint8 HxWx3 (ppshitu.utils.image.read_image). Each op is
`op(img, rng)`: random ops draw only from `rng` (a numpy Generator the dataset keys
by seed, epoch and position), so augmentation is reproducible, also across worker
processes and after a resume.

`eval_spec(ops)` reads an eval pipeline's input size, interpolation and normalization
for the exported `inference.yml`, so the query path (ppshitu.infer) feeds the model
exactly as evaluation did.
"""
import math

import cv2
import numpy as np

from ...config import Field, parse_number
from ...errors import ConfigError
from ...registry import Registry
from ...utils.image import as_rgb_uint8

TRANSFORMS = Registry("transform")
NUM = (int, float)
MAX_SIDE = 16384
_SIDE = Field(int, min_value=1, max_value=MAX_SIDE)
_SIZE = Field((int, list, tuple), min_value=1, max_value=MAX_SIDE, item=_SIDE, length=2,
              doc="px: an int (square) or [width, height]")
_PROB = Field(NUM, min_value=0, max_value=1, doc="a probability")
_FRACTION = Field(NUM, min_value=0, max_value=1)
_INTERPOLATION = Field((str, type(None)), doc="nearest, bilinear, bicubic, area, lanczos or random")
_BACKEND = Field(str, doc="accepted for PaddleClas compatibility (OpenCV decodes and resizes)")
_CHANNEL_VALUE = Field(NUM, text_number=True, min_value=-1e4, max_value=1e4)

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_PADDLECLAS_INTERP = {None: "bilinear", "nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic",
                      "area": "area", "lanczos": "lanczos", "random": "random"}


def _interp_name(value, where):
    key = value.lower() if isinstance(value, str) else value
    if key not in _PADDLECLAS_INTERP:
        raise ConfigError(f"{where}.interpolation must be one of {sorted(k for k in _PADDLECLAS_INTERP if k)}, "
                          f"got {value!r}")
    return _PADDLECLAS_INTERP[key]


def _interp(name, rng):
    if name == "random":
        return list(INTERPOLATIONS.values())[int(rng.integers(len(INTERPOLATIONS)))]
    return INTERPOLATIONS[name]


def _size_wh(size, where):
    """PaddleClas sizes: an int (square) or [w, h]."""
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        return int(size[0]), int(size[1])
    raise ConfigError(f"{where}.size must be a positive int or [width, height], got {size!r}")


@TRANSFORMS.register()
class DecodeImage:
    """Images are decoded (to RGB) by the dataset; this op checks them and honours
    `to_rgb: False` (BGR) and `channel_first` for PaddleClas configs."""

    CONFIG_SCHEMA = {"to_rgb": Field(bool), "channel_first": Field(bool), "to_np": Field(bool), "backend": _BACKEND}

    def __init__(self, to_rgb=True, channel_first=False, to_np=True, backend="cv2"):
        self.to_rgb, self.channel_first = to_rgb, channel_first

    def __call__(self, img, rng=None):
        img = as_rgb_uint8(img)
        if not self.to_rgb:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img.transpose(2, 0, 1)) if self.channel_first else img


@TRANSFORMS.register()
class ResizeImage:
    """Resize to `size` ([w, h] or int), or the short side to `resize_short` (aspect kept)."""

    CONFIG_SCHEMA = {"size": Field((int, list, tuple, type(None)), min_value=1, max_value=MAX_SIDE, item=_SIDE,
                                   length=2),
                     "resize_short": Field((int, type(None)), min_value=1, max_value=MAX_SIDE),
                     "interpolation": _INTERPOLATION, "backend": _BACKEND, "return_numpy": Field(bool)}

    def __init__(self, size=None, resize_short=None, interpolation=None, backend="cv2", return_numpy=True):
        if (size is None) == (resize_short is None):
            raise ConfigError("ResizeImage: give exactly one of size and resize_short")
        self.size = None if size is None else _size_wh(size, "ResizeImage")
        self.resize_short = resize_short
        self.interpolation = _interp_name(interpolation, "ResizeImage")

    def __call__(self, img, rng=None):
        h, w = img.shape[:2]
        if self.size is not None:
            tw, th = self.size
        else:
            scale = self.resize_short / min(h, w)
            tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        return cv2.resize(img, (tw, th), interpolation=_interp(self.interpolation, rng))


@TRANSFORMS.register()
class CropImage:
    """Centre crop to `size`."""

    CONFIG_SCHEMA = {"size": _SIZE}

    def __init__(self, size):
        self.w, self.h = _size_wh(size, "CropImage")

    def __call__(self, img, rng=None):
        h, w = img.shape[:2]
        if h < self.h or w < self.w:
            raise ValueError(f"CropImage: image {w}x{h} is smaller than the crop {self.w}x{self.h}; resize first")
        y, x = (h - self.h) // 2, (w - self.w) // 2
        return img[y:y + self.h, x:x + self.w]


@TRANSFORMS.register()
class RandCropImage:
    """Inception-style random-resized crop: area fraction in `scale`, aspect in `ratio`."""

    CONFIG_SCHEMA = {"size": _SIZE,
                     "scale": Field((list, tuple, type(None)), length=2,
                                    item=Field(NUM, min_value=0, min_exclusive=True, max_value=1),
                                    doc="[low, high] fractions of the image's area"),
                     "ratio": Field((list, tuple, type(None)), length=2,
                                    item=Field(NUM, min_value=0, min_exclusive=True, max_value=100),
                                    doc="[low, high] aspect ratios (width / height)"),
                     "interpolation": _INTERPOLATION, "backend": _BACKEND, "use_log_aspect": Field(bool)}

    def __init__(self, size, scale=None, ratio=None, interpolation=None, backend="cv2", use_log_aspect=False):
        self.w, self.h = _size_wh(size, "RandCropImage")
        self.scale = tuple(scale or (0.08, 1.0))
        self.ratio = tuple(ratio or (3.0 / 4.0, 4.0 / 3.0))
        self.use_log_aspect = use_log_aspect
        self.interpolation = _interp_name(interpolation, "RandCropImage")

    def __call__(self, img, rng):
        h, w = img.shape[:2]
        area = h * w
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            if self.use_log_aspect:
                aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            else:
                aspect = rng.uniform(*self.ratio)
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                break
        else:  # fall back to the largest centred crop of the allowed aspect
            cw, ch = w, h
            x = y = 0
        crop = img[y:y + ch, x:x + cw]
        return cv2.resize(crop, (self.w, self.h), interpolation=_interp(self.interpolation, rng))


@TRANSFORMS.register()
class RandFlipImage:
    """Flip with probability `prob`: flip_code 1 horizontal, 0 vertical, -1 both."""

    CONFIG_SCHEMA = {"flip_code": Field(int, choices=(1, 0, -1)), "prob": _PROB}

    def __init__(self, flip_code=1, prob=0.5):
        if flip_code not in (-1, 0, 1):
            raise ConfigError(f"RandFlipImage.flip_code must be 1, 0 or -1, got {flip_code!r}")
        self.flip_code, self.prob = flip_code, prob

    def __call__(self, img, rng):
        if rng.random() >= self.prob:
            return img
        return np.ascontiguousarray(cv2.flip(img, self.flip_code))


@TRANSFORMS.register()
class ColorJitter:
    """Random brightness, contrast and saturation factors in [1-x, 1+x]."""

    CONFIG_SCHEMA = {"brightness": _FRACTION, "contrast": _FRACTION, "saturation": _FRACTION,
                     "hue": Field(NUM, min_value=0, max_value=0.5, doc="accepted for PaddleClas compatibility"),
                     "prob": _PROB}

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, prob=1.0):
        self.b, self.c, self.s, self.prob = brightness, contrast, saturation, prob

    def __call__(self, img, rng):
        if rng.random() >= self.prob:
            return img
        out = img.astype(np.float32)
        if self.b:
            out *= rng.uniform(1 - self.b, 1 + self.b)
        if self.c:
            mean = out.mean()
            out = (out - mean) * rng.uniform(1 - self.c, 1 + self.c) + mean
        if self.s:
            gray = out.mean(axis=2, keepdims=True)
            out = (out - gray) * rng.uniform(1 - self.s, 1 + self.s) + gray
        return np.clip(out, 0, 255).astype(np.uint8)


@TRANSFORMS.register()
class NormalizeImage:
    """(img * scale - mean) / std per channel, in the image's channel order; float32 HWC
    (or CHW with order: chw)."""

    CONFIG_SCHEMA = {"scale": Field((int, float, type(None)), text_number=True, min_value=0, min_exclusive=True,
                                    max_value=1e4, doc="e.g. 1.0/255.0"),
                     "mean": Field((list, tuple, type(None)), length=3, item=_CHANNEL_VALUE),
                     "std": Field((list, tuple, type(None)), length=3,
                                  item=Field(NUM, text_number=True, min_value=0, min_exclusive=True, max_value=1e4)),
                     "order": Field(str, choices=("hwc", "chw")), "output_fp16": Field(bool),
                     "channel_num": Field(int, only=(3,), why="only 3-channel (RGB) images are read")}

    def __init__(self, scale=None, mean=None, std=None, order="hwc", output_fp16=False, channel_num=3):
        self.scale = parse_number(scale if scale is not None else 1.0 / 255.0, "NormalizeImage.scale")
        self.mean = [parse_number(m, "NormalizeImage.mean") for m in (mean or [0.485, 0.456, 0.406])]
        self.std = [parse_number(s, "NormalizeImage.std") for s in (std or [0.229, 0.224, 0.225])]
        if any(s == 0 for s in self.std):
            raise ConfigError(f"NormalizeImage.std must not contain 0, got {self.std}")
        if order not in ("hwc", "chw"):
            raise ConfigError(f"NormalizeImage.order must be hwc or chw, got {order!r}")
        if channel_num != 3:
            raise ConfigError(f"NormalizeImage.channel_num: only 3 channels are supported, got {channel_num}")
        self.order = order
        shape = (3, 1, 1) if order == "chw" else (1, 1, 3)
        self._mean = np.array(self.mean, np.float32).reshape(shape)
        self._inv_std = (1.0 / np.array(self.std, np.float32)).reshape(shape)

    def __call__(self, img, rng=None):
        return ((img.astype(np.float32) * np.float32(self.scale) - self._mean) * self._inv_std).astype(np.float32)


@TRANSFORMS.register()
class ToCHWImage:
    CONFIG_SCHEMA = {}

    def __init__(self):
        pass

    def __call__(self, img, rng=None):
        return np.ascontiguousarray(img.transpose(2, 0, 1))


@TRANSFORMS.register()
class RandomErasing:
    """Erase a random rectangle (area fraction sl..sh, aspect r1..1/r1) with probability EPSILON;
    mode 'const' fills `mean`, 'pixel' per-pixel noise, 'channel' per-channel noise. Runs on
    normalized float images, HWC or CHW."""

    CONFIG_SCHEMA = {"EPSILON": _PROB, "sl": _FRACTION, "sh": _FRACTION,
                     "r1": Field(NUM, min_value=0, min_exclusive=True, max_value=1, doc="the smallest aspect ratio"),
                     "mean": Field((list, tuple), length=3, item=_CHANNEL_VALUE),
                     "attempt": Field(int, min_value=1, max_value=10000), "use_log_aspect": Field(bool),
                     "mode": Field(str, choices=("const", "pixel", "channel"))}

    def __init__(self, EPSILON=0.5, sl=0.02, sh=0.4, r1=0.3, mean=(0.0, 0.0, 0.0), attempt=100,
                 use_log_aspect=False, mode="const"):
        if mode not in ("const", "pixel", "channel"):
            raise ConfigError(f"RandomErasing.mode must be const, pixel or channel, got {mode!r}")
        self.prob, self.sl, self.sh, self.r1 = EPSILON, sl, sh, r1
        self.mean, self.attempt, self.mode, self.use_log_aspect = list(mean), attempt, mode, use_log_aspect

    def __call__(self, img, rng):
        if rng.random() > self.prob:
            return img
        chw = img.shape[0] in (1, 3) and img.shape[2] not in (1, 3)
        h, w = (img.shape[1], img.shape[2]) if chw else img.shape[:2]
        for _ in range(self.attempt):
            area = h * w * rng.uniform(self.sl, self.sh)
            lo, hi = self.r1, 1.0 / self.r1
            aspect = math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.use_log_aspect else rng.uniform(lo, hi)
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < ew < w and 0 < eh < h:
                y, x = int(rng.integers(0, h - eh)), int(rng.integers(0, w - ew))
                img = img.copy()
                if self.mode == "pixel":
                    fill = rng.normal(size=(3, eh, ew) if chw else (eh, ew, 3)).astype(img.dtype)
                elif self.mode == "channel":
                    fill = rng.normal(size=(3, 1, 1) if chw else (1, 1, 3)).astype(img.dtype)
                else:
                    fill = np.array(self.mean, img.dtype).reshape((3, 1, 1) if chw else (1, 1, 3))
                if chw:
                    img[:, y:y + eh, x:x + ew] = fill
                else:
                    img[y:y + eh, x:x + ew] = fill
                return img
        return img


class Compose:
    def __init__(self, ops):
        self.ops = ops

    def __call__(self, img, rng):
        for op in self.ops:
            img = op(img, rng)
        return img


def build_transforms(specs, where):
    return Compose(TRANSFORMS.build_list(specs, where))


def eval_spec(ops, where="DataLoader.Eval...transform_ops"):
    """input_size [H, W], interpolation, scale, mean, std of an eval pipeline, as inference.yml
    states them. Only pipelines the query path can reproduce exactly are accepted:
    a fixed-size ResizeImage, NormalizeImage and ToCHWImage (DecodeImage optional)."""
    ops = ops.ops if isinstance(ops, Compose) else ops
    kinds = [type(op).__name__ for op in ops if not isinstance(op, DecodeImage)]
    resize = [op for op in ops if isinstance(op, ResizeImage)]
    norm = [op for op in ops if isinstance(op, NormalizeImage)]
    if kinds != ["ResizeImage", "NormalizeImage", "ToCHWImage"] or resize[0].size is None or \
            norm[0].order != "hwc" or any(isinstance(op, DecodeImage) and (op.channel_first or not op.to_rgb)
                                          for op in ops):
        raise ConfigError(f"{where}: export needs an eval pipeline of DecodeImage (RGB, HWC), "
                          f"ResizeImage {{size: [w, h]}}, NormalizeImage (order: hwc), ToCHWImage, so the query "
                          f"path can reproduce it; got {kinds}")
    (w, h), n = resize[0].size, norm[0]
    if resize[0].interpolation == "random":
        raise ConfigError(f"{where}: ResizeImage.interpolation 'random' cannot be exported")
    return {"input_size": [h, w], "interpolation": resize[0].interpolation, "scale": float(n.scale),
            "mean": [float(m) for m in n.mean], "std": [float(s) for s in n.std]}
