"""Recognition pre-processing on the query path: cv2 resize + one fused multiply-add.

`RecPreprocess` is built from an exported model's inference.yml (the preprocessing the
model was trained and evaluated with) or, for PP-ShiTu's published models, from the
inference config's `RecPreProcess.transform_ops` with PaddleClas's semantics.
"""
import cv2
import numpy as np

from ..config import parse_number
from ..errors import ConfigError
from ..registry import split_spec

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fused_normalizer(scale, mean, std):
    """(alpha, beta) so that pixel * alpha + beta == (pixel * scale - mean) / std, per channel."""
    std = np.asarray(std, np.float32)
    return (np.float32(scale) / std).astype(np.float32), (-np.asarray(mean, np.float32) / std).astype(np.float32)


def normalize_chw(img, alpha, beta):
    """RGB uint8 HWC -> float32 CHW, pixel * alpha + beta per channel. Channel by channel into a CHW
    buffer: numpy's whole-array (img * alpha + beta).transpose() then a contiguous copy cost 8x more
    (640 x 640: 4.9 ms vs 0.6 ms here), a detector input's worth of time per image."""
    out = np.empty((img.shape[2],) + img.shape[:2], np.float32)
    for c in range(img.shape[2]):
        np.multiply(img[:, :, c], alpha[c], out=out[c], dtype=np.float32)
        out[c] += beta[c]
    return out


class RecPreprocess:
    """RGB uint8 HWC -> float32 [3, H, W]. Thread-safe (no state changes after construction).

    input_size: [H, W] after the resize (or after the centre crop when crop_size is set);
    resize_short: resize the shorter side to this first (PaddleClas `ResizeImage{resize_short}`)."""

    def __init__(self, input_size, interpolation="bilinear", scale=1 / 255.0, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, resize_short=None, crop_size=None):
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"rec preprocess: interpolation must be one of {sorted(INTERPOLATIONS)}, "
                              f"got {interpolation!r}")
        self.input_size = [int(v) for v in input_size] if input_size is not None else None
        self.interpolation = interpolation
        self.resize_short = resize_short
        self.crop_size = crop_size
        self.scale, self.mean, self.std = float(scale), list(mean), list(std)
        self._alpha, self._beta = fused_normalizer(scale, mean, std)

    @classmethod
    def from_spec(cls, spec):
        """inference.yml's keys; `resize_short` and `crop_size` (optional) are written by tools/import_model.py
        for models preprocessed that way (CLIP: shorter side to 224, centre crop 224)."""
        crop = spec.get("crop_size")
        return cls(crop or spec["input_size"], spec["interpolation"],
                   parse_number(spec["scale"], "inference.yml: scale"), spec["mean"], spec["std"],
                   resize_short=spec.get("resize_short") or None, crop_size=crop or None)

    @classmethod
    def from_transform_ops(cls, ops, where="RecPreProcess.transform_ops"):
        """PaddleClas's ResizeImage / CropImage / NormalizeImage / ToCHWImage list."""
        if not isinstance(ops, list) or not ops:
            raise ConfigError(f"{where}: expected a list like [{{ResizeImage: {{size: 224}}}}, "
                              f"{{NormalizeImage: {{...}}}}, {{ToCHWImage: }}], got {ops!r}")
        kw = {"input_size": None}
        for i, op in enumerate(ops):
            name, args = split_spec(op, f"{where}[{i}]")
            at = f"{where}[{i}].{name}"
            if name == "ResizeImage":
                _known(args, ("size", "resize_short", "interpolation", "backend", "return_numpy"), at)
                interp = args.get("interpolation") or "bilinear"
                if args.get("resize_short"):
                    kw.update(resize_short=int(args["resize_short"]))
                elif args.get("size") is not None:
                    size = args["size"]  # PaddleClas: an int is square, a list is [w, h]
                    kw["input_size"] = [size, size] if isinstance(size, int) else [size[1], size[0]]
                else:
                    raise ConfigError(f"{at}: needs size or resize_short")
                kw["interpolation"] = str(interp).lower()
            elif name == "CropImage":
                _known(args, ("size",), at)
                size = args.get("size")
                crop = [size, size] if isinstance(size, int) else [size[1], size[0]]
                kw.update(crop_size=crop, input_size=crop)
            elif name == "NormalizeImage":
                _known(args, ("scale", "mean", "std", "order", "output_fp16", "channel_num"), at)
                kw.update(scale=parse_number(args.get("scale", 1 / 255.0), f"{at}.scale"),
                          mean=args.get("mean") or IMAGENET_MEAN, std=args.get("std") or IMAGENET_STD)
            elif name == "ToCHWImage":
                pass
            else:
                raise ConfigError(f"{at}: unsupported rec preprocess op; supported: ResizeImage, CropImage, "
                                  f"NormalizeImage, ToCHWImage")
        if kw["input_size"] is None:
            raise ConfigError(f"{where}: no fixed input size (add ResizeImage{{size}} or CropImage{{size}})")
        return cls(**kw)

    @property
    def decode_side(self):
        """The shortest side an image may be decoded at without changing what the model sees much:
        the resize target (utils.image's reduced decode keeps the shorter side at least this)."""
        return int(self.resize_short or max(self.input_size))

    def resize(self, rgb):
        interp = INTERPOLATIONS[self.interpolation]
        if self.resize_short:
            h, w = rgb.shape[:2]
            s = self.resize_short / min(h, w)
            rgb = cv2.resize(rgb, (int(round(w * s)), int(round(h * s))), interpolation=interp)
        if self.crop_size:
            ch, cw = self.crop_size
            h, w = rgb.shape[:2]
            if h < ch or w < cw:
                rgb = cv2.resize(rgb, (max(w, cw), max(h, ch)), interpolation=interp)
                h, w = rgb.shape[:2]
            y, x = (h - ch) // 2, (w - cw) // 2
            return rgb[y:y + ch, x:x + cw]
        th, tw = self.input_size
        if rgb.shape[0] != th or rgb.shape[1] != tw:
            rgb = cv2.resize(rgb, (tw, th), interpolation=interp)
        return rgb

    def __call__(self, rgb):
        return normalize_chw(self.resize(rgb), self._alpha, self._beta)


def _known(args, names, where):
    from ..errors import did_you_mean
    for key in args:
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(key, names)}; valid keys: "
                              f"{', '.join(names)}")
