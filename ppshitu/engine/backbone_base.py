"""What a backbone entry is (the recognition and the detection backbones, one registry:
ppshitu/engine/backbones.py): a factory and, for the weights `pretrained: True` loads, the preprocessing those
weights expect (timm's pretrained configs). A backbone module imports this one, never the registry.

    LITE0 = BackboneEntry(functools.partial(EfficientNetLite, "lite0"), PretrainedCfg(source="package:...", ...))

A recognition backbone is an `nn.Layer` returning `[N, C]` features; a detection backbone follows ppdet's
protocol (`forward({"image": x}) -> [feature maps]`, `out_shape`).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from .. import weights
from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """What a backbone's published weights are and how their training fed the network. Export
    writes the eval pipeline's preprocessing into inference.yml; `check_preprocess` refuses a
    pipeline that would feed pretrained weights differently from this."""
    source: Optional[str]                   # URL, package:<module>/<file>, or None (no published weights)
    input_size: Tuple[int, int] = (224, 224)
    scale: float = 1 / 255.0                # pixel * scale, then (x - mean) / std, RGB
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    convert: Optional[Callable] = field(default=None, compare=False)  # (file state, layer) -> state


NO_WEIGHTS = PretrainedCfg(source=None)


@dataclass(frozen=True)
class BackboneEntry:
    factory: Callable                       # (**config kwargs) -> the layer, random weights
    pretrained: PretrainedCfg = NO_WEIGHTS  # what `pretrained: True` loads


def load_weights(layer, name, cfg, pretrained, where="Arch.Backbone.pretrained"):
    """Load into `layer` (backbone `name`, pretrained config `cfg`) the weights `pretrained` names: True (the
    registered ones) or a URL / path / package: file. Returns the count of tensors loaded. A classifier in
    the file that the backbone lacks is skipped."""
    source = cfg.source if pretrained is True else pretrained
    if source is None:
        raise ConfigError(f"{where}: {name} has no published weights; give a .pdparams path or False")
    path = weights.resolve(source, where)
    state = weights.read_state(path, where)
    if cfg.convert is not None and path.endswith((".pth", ".pt")):
        state = cfg.convert(state, layer)
    return weights.load_into(layer, path, where, strict=False, state=state)[1]


def check_normalize(name, cfg, spec, where):
    """Refuse an eval pipeline (`spec`: scale, mean, std) whose normalisation differs from what the
    pretrained weights of backbone `name` (config `cfg`) expect."""
    want = {"scale": cfg.scale, "mean": list(cfg.mean), "std": list(cfg.std)}
    got = {k: spec[k] for k in want}
    scaled = lambda d: ([m / d["scale"] for m in d["mean"]], [s / d["scale"] for s in d["std"]])  # noqa: E731
    if any(abs(a - b) > 1e-3 * max(1.0, abs(b)) for x, y in zip(scaled(got), scaled(want)) for a, b in zip(x, y)):
        raise ConfigError(f"{where}: NormalizeImage gives scale {got['scale']:.6g}, mean {got['mean']}, std "
                          f"{got['std']}, but {name}'s pretrained weights were trained with scale {cfg.scale:.6g}, "
                          f"mean {list(cfg.mean)}, std {list(cfg.std)}")
