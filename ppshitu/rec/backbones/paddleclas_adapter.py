"""The one module that imports paddleclas: its backbone families by name and their official weight URLs
(`entries()`: ppshitu/engine/backbones.py's provider, called the first time a recognition backbone name is
not among the registered ones)."""
import sys

from ...engine.backbone_base import BackboneEntry, PretrainedCfg
from ...errors import ConfigError, did_you_mean

# Families the retrieval recipes use; every named variant of each is selectable.
_FAMILIES = ("MobileNetV1", "MobileNetV3_", "PPLCNet_", "PPLCNetV2_")


def _backbone_module():
    from paddleclas.ppcls.arch import backbone  # heavy import: only when a model is built
    _quiet_ppcls_logger()
    return backbone


def _quiet_ppcls_logger():
    """Importing paddleclas gives its 'ppcls' logger a handler on the sys.stdout of that moment, and every
    MobileNet build then prints '[date] ppcls WARNING: "init_res" will be deprecated' into ppshitu's output
    (library noise; and where stdout was swapped since, as by pytest's capture, '--- Logging error ---' with a
    traceback). Its handlers go; only its errors are shown (by logging's last-resort handler, on stderr)."""
    import logging

    ppcls = logging.getLogger("ppcls")
    for handler in list(ppcls.handlers):
        ppcls.removeHandler(handler)
    ppcls.setLevel(logging.ERROR)


def backbone_names():
    module = _backbone_module()
    return sorted(n for n in dir(module) if n.startswith(_FAMILIES) and callable(getattr(module, n))
                  and "Tanh" not in n and "ShiTu" not in n and "BaseNet" not in n)


def entries():
    """{name: BackboneEntry} of every backbone of the families, with PaddleClas's ImageNet weights."""
    return {name: BackboneEntry(factory(name), PretrainedCfg(source=weights_url(name))) for name in backbone_names()}


def factory(name):
    """A constructor for the named paddleclas backbone (random init; ppshitu loads the weights)."""
    def create(**kwargs):
        if name == "MobileNetV1" and "scale" in kwargs:
            raise ConfigError("Arch.Backbone: MobileNetV1 takes no scale; use MobileNetV1_x0_25, _x0_5 or _x0_75")
        try:
            return getattr(_backbone_module(), name)(pretrained=False, **kwargs)
        except TypeError as e:
            raise ConfigError(f"Arch.Backbone: {name} rejected its arguments {sorted(kwargs)}: {e}") from None
    create.__name__ = name
    return create


def weights_url(name):
    """PaddleClas's official ImageNet weights URL for a backbone name."""
    fn = getattr(_backbone_module(), name)
    urls = getattr(sys.modules[fn.__module__], "MODEL_URLS", {})
    return urls.get(name)  # None: PaddleClas publishes none


def stop_after(backbone, layer_name, where="Arch.BackboneStopLayer"):
    """Cut the backbone after `layer_name` (PaddleClas's BackboneStopLayer)."""
    if not hasattr(backbone, "stop_after"):
        raise ConfigError(f"{where}: only PaddleClas backbones can be cut; {type(backbone).__name__} ends in its "
                          f"pooled features already: leave BackboneStopLayer out")
    if not backbone.stop_after(layer_name):
        names = [n for n, _ in backbone.named_children()]
        raise ConfigError(f"{where}.name: no layer '{layer_name}' to stop after{did_you_mean(layer_name, names)}; "
                          f"top-level layers: {', '.join(names)}")
