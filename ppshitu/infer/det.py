"""The mainbody detector under Paddle Inference (never imports ppdet).

Feeds a PaddleDetection-style export (inputs image / im_shape / scale_factor, outputs
`[class, score, x1, y1, x2, y2]` rows + bbox_num, NMS inside): ppshitu's own exports,
described by inference.yml, and PP-ShiTu's published mainbody models, described by
the inference config's `DetPreProcess.transform_ops`. `DetPreprocess` is also what
training-time evaluation uses, so evaluation and deployment see the same pixels.
"""
import cv2
import numpy as np

from ..config import parse_number
from ..errors import ConfigError
from ..registry import split_spec
from ..utils.image import as_rgb_uint8
from .runtime import load_runtime
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, _known, fused_normalizer, normalize_chw
from .spec import read_spec

_INTERP_NAMES = {v: k for k, v in INTERPOLATIONS.items()}  # PP-ShiTu configs give cv2 codes (2 = bicubic)


class DetPreprocess:
    """Resize to `input_size` (H, W; stretched, as PP-ShiTu's `DetResize keep_ratio: false`),
    then (pixel * scale - mean) / std in one fused multiply-add, then HWC -> CHW.

    __call__(rgb) -> (image float32 [3, H, W], im_shape [2] (resized H, W),
    scale_factor [2] (resized / original, H then W)). Thread-safe."""

    def __init__(self, input_size, interpolation="bicubic", scale=1 / 255.0, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, keep_ratio=False):
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"det preprocess: interpolation must be one of {sorted(INTERPOLATIONS)}, "
                              f"got {interpolation!r}")
        if isinstance(input_size, int):
            input_size = [input_size, input_size]
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ConfigError(f"det preprocess: input_size must be [H, W] > 0, got {input_size!r}")
        self.input_size = [int(v) for v in input_size]
        self.interpolation = interpolation
        self.keep_ratio = bool(keep_ratio)
        self.scale, self.mean, self.std = float(scale), [float(m) for m in mean], [float(s) for s in std]
        self._alpha, self._beta = fused_normalizer(self.scale, self.mean, self.std)

    def scales(self, height, width):
        """(scale_y, scale_x) that DetResize applies to an image of this size."""
        th, tw = self.input_size
        if not self.keep_ratio:
            return th / height, tw / width
        s = min(th, tw) / min(height, width)
        if round(s * max(height, width)) > max(th, tw):
            s = max(th, tw) / max(height, width)
        return s, s

    def __call__(self, rgb):
        h, w = rgb.shape[:2]
        sy, sx = self.scales(h, w)
        if self.keep_ratio:
            img = cv2.resize(rgb, None, fx=sx, fy=sy, interpolation=INTERPOLATIONS[self.interpolation])
        else:
            img = cv2.resize(rgb, (self.input_size[1], self.input_size[0]),
                             interpolation=INTERPOLATIONS[self.interpolation])
        return self.normalize(img), np.array(img.shape[:2], np.float32), np.array([sy, sx], np.float32)

    def normalize(self, resized):
        """Resized RGB uint8 HWC -> normalized float32 CHW."""
        return normalize_chw(resized, self._alpha, self._beta)

    def spec(self):
        """The inference.yml keys that describe this preprocessing."""
        return {"input_size": list(self.input_size), "interpolation": self.interpolation, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_spec(cls, spec):
        return cls(spec["input_size"], spec["interpolation"], parse_number(spec["scale"], "inference.yml: scale"),
                   spec["mean"], spec["std"])

    @classmethod
    def from_transform_ops(cls, ops, where="DetPreProcess.transform_ops"):
        """PP-ShiTu's DetResize / DetNormalizeImage / DetPermute list."""
        if not isinstance(ops, list) or not ops:
            raise ConfigError(f"{where}: expected a list like [{{DetResize: {{...}}}}, {{DetNormalizeImage: "
                              f"{{...}}}}, {{DetPermute: {{}}}}], got {ops!r}")
        kwargs, seen = {}, set()
        for i, op in enumerate(ops):
            name, args = split_spec(op, f"{where}[{i}]")
            at = f"{where}[{i}].{name}"
            if name == "DetResize":
                _known(args, ("target_size", "keep_ratio", "interp"), at)
                if "target_size" not in args:
                    raise ConfigError(f"{at}: missing target_size")
                interp = args.get("interp", cv2.INTER_LINEAR)
                if interp not in _INTERP_NAMES:
                    raise ConfigError(f"{at}.interp: expected a cv2 code in {sorted(_INTERP_NAMES)}, got {interp!r}")
                kwargs.update(input_size=args["target_size"], interpolation=_INTERP_NAMES[interp],
                              keep_ratio=args.get("keep_ratio", True))
            elif name == "DetNormalizeImage":
                _known(args, ("mean", "std", "is_scale"), at)
                kwargs.update(mean=args.get("mean", IMAGENET_MEAN), std=args.get("std", IMAGENET_STD),
                              scale=1 / 255.0 if args.get("is_scale", True) else 1.0)
            elif name == "DetPermute":
                pass
            elif name == "DetPadStride" and not args.get("stride"):
                pass  # stride 0: no padding
            else:
                raise ConfigError(f"{at}: unsupported det preprocess op; supported: DetResize, "
                                  f"DetNormalizeImage, DetPermute, DetPadStride with stride 0")
            seen.add(name)
        for required in ("DetResize", "DetPermute"):
            if required not in seen:
                raise ConfigError(f"{where}: missing {required}")
        if "DetNormalizeImage" not in seen:
            kwargs.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)
        return cls(**kwargs)


def select_boxes(bbox, height, width, threshold, max_det_results):
    """Rows `[class, score, x1, y1, x2, y2]` -> float32 [K, 5] `[x1, y1, x2, y2, score]`:
    score >= threshold, clipped to the image, non-empty after clipping, best first."""
    bbox = np.asarray(bbox, np.float32).reshape(-1, 6)
    bbox = bbox[bbox[:, 1] >= threshold]
    out = np.empty((len(bbox), 5), np.float32)
    out[:, [0, 2]] = np.clip(bbox[:, [2, 4]], 0, width)
    out[:, [1, 3]] = np.clip(bbox[:, [3, 5]], 0, height)
    out[:, 4] = bbox[:, 1]
    out = out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]
    order = np.argsort(-out[:, 4], kind="stable")[:max_det_results]
    return out[order]


class DetPredictor:
    """det.predict(rgb) -> float32 [K, 5] `[x1, y1, x2, y2, score]` in original pixels; K may be 0."""

    def __init__(self, model_dir, threshold=0.2, max_det_results=5, preprocess=None, backend="paddle",
                 **runtime_options):
        spec = read_spec(model_dir)
        if spec is not None:
            if spec["model_type"] != "det":
                raise ConfigError(f"{model_dir}: inference.yml says model_type {spec['model_type']!r}; "
                                  f"the detector needs a det model")
            self.preprocess = DetPreprocess.from_spec(spec)
            self.label_list = spec.get("label_list") or ["foreground"]
        elif preprocess is not None:
            self.preprocess = DetPreprocess.from_transform_ops(preprocess)
            self.label_list = ["foreground"]
        else:
            raise ConfigError(f"{model_dir}: no inference.yml; pass DetPreProcess.transform_ops from the "
                              f"inference config to describe the model's preprocessing")
        self.threshold, self.max_det_results = float(threshold), int(max_det_results)
        self.model_dir = model_dir
        self.fingerprint = spec.get("fingerprint") if spec else None
        self.runtime = load_runtime(model_dir, backend, **runtime_options)
        self._inputs = list(self.runtime.input_names)
        missing = {"image", "scale_factor"} - set(self._inputs)
        if missing:
            raise ConfigError(f"{model_dir}: not a PaddleDetection-style detector: inputs {sorted(self._inputs)} "
                              f"lack {sorted(missing)}")

    def run(self, image, im_shape, scale_factor):
        """Raw network call on a preprocessed batch -> (bbox [M, 6], bbox_num [N])."""
        feeds = {"image": image, "im_shape": im_shape, "scale_factor": scale_factor}
        outputs = self.runtime.run({n: np.ascontiguousarray(feeds[n], np.float32) for n in self._inputs})
        bbox, bbox_num = (outputs[n] for n in self.runtime.output_names[:2])
        if bbox.ndim != 2 or bbox.shape[-1] != 6:  # outputs may come in either order
            bbox, bbox_num = bbox_num, bbox
        return bbox, bbox_num

    def predict(self, rgb):
        rgb = as_rgb_uint8(rgb)
        chw, im_shape, scale_factor = self.preprocess(rgb)
        bbox, _ = self.run(chw[None], im_shape[None], scale_factor[None])
        return select_boxes(bbox, rgb.shape[0], rgb.shape[1], self.threshold, self.max_det_results)
