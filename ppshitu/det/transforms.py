"""Detection training augmentation on RGB uint8 images and [x1, y1, x2, y2] boxes.

Per-image transforms take and return a `sample` dict (image, boxes, classes) and
draw from the numpy generator they are given, so a batch depends only on (seed,
epoch, index) and resuming a run replays it exactly. Batch transforms see the list
of samples of one batch (multi-scale training picks one size per batch).
"""
import cv2
import numpy as np

from ..config import Field
from ..errors import ConfigError
from ..registry import Registry

SAMPLE_TRANSFORMS = Registry("det transform")
BATCH_TRANSFORMS = Registry("det batch transform")
NUM = (int, float)

_INTERPS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)


def _iou(box, boxes):
    lo, hi = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:], box[2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


@SAMPLE_TRANSFORMS.register()
class RandomCrop:
    """SSD-style crop (as PaddleDetection's RandomCrop): pick a minimum-IoU constraint
    (or no crop), then try crops of `scaling` area fraction and `aspect_ratio` whose IoU
    with some box reaches it; boxes whose centre falls inside are kept and clipped."""

    CONFIG_SCHEMA = {
        "aspect_ratio": Field((list, tuple), length=2, item=Field(NUM, min_value=0, min_exclusive=True, max_value=100)),
        "scaling": Field((list, tuple), length=2, item=Field(NUM, min_value=0, min_exclusive=True, max_value=1)),
        "thresholds": Field((list, tuple), item=Field(NUM, min_value=0, max_value=1), doc="minimum IoUs to draw from"),
        "num_attempts": Field(int, min_value=1, max_value=10000), "allow_no_crop": Field(bool)}

    def __init__(self, aspect_ratio=(0.5, 2.0), scaling=(0.3, 1.0), thresholds=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9),
                 num_attempts=50, allow_no_crop=True):
        self.aspect_ratio, self.scaling = tuple(aspect_ratio), tuple(scaling)
        self.thresholds, self.num_attempts, self.allow_no_crop = tuple(thresholds), num_attempts, allow_no_crop

    def __call__(self, sample, rng):
        boxes = sample["boxes"]
        if len(boxes) == 0:
            return sample
        h, w = sample["image"].shape[:2]
        choices = list(self.thresholds) + ([None] if self.allow_no_crop else [])
        for i in rng.permutation(len(choices)):
            thresh = choices[i]
            if thresh is None:
                return sample
            for _ in range(self.num_attempts):
                scale = rng.uniform(*self.scaling)
                ratio = np.clip(rng.uniform(*self.aspect_ratio), scale ** 2, 1 / scale ** 2)
                ch, cw = int(h * scale / np.sqrt(ratio)), int(w * scale * np.sqrt(ratio))
                if ch < 8 or cw < 8:
                    continue
                y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                crop = np.array([x0, y0, x0 + cw, y0 + ch], np.float32)
                if _iou(crop, boxes).max() < thresh:
                    continue
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                keep = np.all((centres >= crop[:2]) & (centres < crop[2:]), axis=1)
                if not keep.any():
                    continue
                kept = np.clip(boxes[keep] - [x0, y0, x0, y0], 0, [cw, ch, cw, ch]).astype(np.float32)
                return dict(sample, image=sample["image"][y0:y0 + ch, x0:x0 + cw], boxes=kept,
                            classes=sample["classes"][keep])
        return sample


@SAMPLE_TRANSFORMS.register()
class RandomFlip:
    CONFIG_SCHEMA = {"prob": Field(NUM, min_value=0, max_value=1)}

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, sample, rng):
        if rng.random() >= self.prob:
            return sample
        w = sample["image"].shape[1]
        boxes = sample["boxes"].copy()
        boxes[:, [0, 2]] = w - sample["boxes"][:, [2, 0]]
        return dict(sample, image=sample["image"][:, ::-1], boxes=boxes)


@SAMPLE_TRANSFORMS.register()
class RandomDistort:
    """Brightness, contrast, saturation and hue, each applied with `prob`, in random order."""

    CONFIG_SCHEMA = {
        **{k: Field((list, tuple), length=2, item=Field(NUM, min_value=0, max_value=10), doc="[low, high] factors")
           for k in ("brightness", "contrast", "saturation")},
        "hue": Field((list, tuple), length=2, item=Field(NUM, min_value=-180, max_value=180), doc="degrees"),
        "prob": Field(NUM, min_value=0, max_value=1)}

    def __init__(self, brightness=(0.5, 1.5), contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=(-18, 18), prob=0.5):
        self.ranges = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
        self.prob = prob

    def __call__(self, sample, rng):
        img = np.ascontiguousarray(sample["image"])
        for name in rng.permutation(list(self.ranges)):
            if rng.random() >= self.prob:
                continue
            v = rng.uniform(*self.ranges[name])
            if name == "hue":
                hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # OpenCV hue is 0..179 (degrees / 2)
                hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(v / 2))) % 180).astype(np.uint8)
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
                continue
            x = img.astype(np.float32)
            if name == "brightness":
                x *= v
            elif name == "contrast":
                x = (x - x.mean()) * v + x.mean()
            else:
                grey = (x @ np.float32([0.299, 0.587, 0.114]))[..., None]
                x = grey + (x - grey) * v
            img = np.clip(x, 0, 255).astype(np.uint8)
        return dict(sample, image=img)


@BATCH_TRANSFORMS.register()
class BatchRandomResize:
    """Resize every image of a batch to one size drawn from `target_size` (ints or [H, W]),
    stretched (keep_ratio false, as PicoDet trains), with a random interpolation if asked."""

    CONFIG_SCHEMA = {"target_size": Field(list, item=Field((int, list), min_value=32, max_value=16384, length=2,
                                                           item=Field(int, min_value=32, max_value=16384))),
                     "random_interp": Field(bool), "interp": Field(int, choices=(0, 1, 2, 3, 4),
                                                                    doc="an OpenCV interpolation flag")}

    def __init__(self, target_size, random_interp=True, interp=cv2.INTER_LINEAR):
        sizes = [[s, s] if isinstance(s, int) else list(s) for s in target_size]
        if not sizes or any(len(s) != 2 or min(s) < 32 for s in sizes):
            raise ConfigError(f"BatchRandomResize.target_size: expected sizes >= 32 like [256, 288, 320], "
                              f"got {target_size!r}")
        self.sizes, self.random_interp, self.interp = sizes, random_interp, interp

    def __call__(self, samples, rng):
        th, tw = self.sizes[int(rng.integers(len(self.sizes)))]
        interp = _INTERPS[int(rng.integers(len(_INTERPS)))] if self.random_interp else self.interp
        out = []
        for s in samples:
            h, w = s["image"].shape[:2]
            image = cv2.resize(np.ascontiguousarray(s["image"]), (tw, th), interpolation=interp)
            boxes = (s["boxes"] * np.float32([tw / w, th / h, tw / w, th / h])).astype(np.float32)
            out.append(dict(s, image=image, boxes=boxes))
        return out
