"""Every backbone by name, recognition (`Arch.Backbone`) and detection (`Arch.backbone`) alike: one registry,
each entry a `backbone_base.BackboneEntry` tagged with the task it serves, named here as "module:attr" and
imported the first time a config uses it.

    backbone = create_backbone("EfficientNetLite0", pooling="gem")              # task="rec"
    load_pretrained(backbone, "EfficientNetLite0", True)                       # or a path / URL / package: file
    det_backbone = create_backbone("LCNet", "Arch.backbone", task="det", scale=0.75)

A new backbone: a module defining its `BackboneEntry` (importing engine/backbone_base.py, never this
module) and one `BACKBONES.add(name, "module:ENTRY", task=...)` line below. PaddleClas's families
(MobileNetV1, MobileNetV3, PP-LCNet, PP-LCNetV2) come from a provider, registered the first time a
recognition name is not found (importing paddleclas costs seconds).
"""
from ..registry import Registry, check_kwargs
from .backbone_base import check_normalize, load_weights

BACKBONES = Registry("backbone")
# recognition: an nn.Layer returning [N, C] features (pooled)
BACKBONES.add("EfficientNetLite0", "ppshitu.rec.backbones.efficientnet_lite:LITE0", task="rec")
BACKBONES.add("EfficientNetLite1", "ppshitu.rec.backbones.efficientnet_lite:LITE1", task="rec")
BACKBONES.add("EfficientNetLite2", "ppshitu.rec.backbones.efficientnet_lite:LITE2", task="rec")
BACKBONES.add_provider("ppshitu.rec.backbones.paddleclas_adapter:entries", task="rec")
# detection: ppdet's backbone protocol (forward({"image": x}) -> feature maps, out_shape)
BACKBONES.add("LCNet", "ppshitu.det.paddledet_adapter:LCNET", task="det")
BACKBONES.add("EfficientNetLiteDet", "ppshitu.det.efficientnet_backbone:ENTRY", task="det")


def backbone_names(task="rec"):
    """Every backbone of `task` (imports the providers: paddleclas for rec)."""
    BACKBONES.load_providers(task=task)
    return BACKBONES.names(task=task)


def get_entry(name, where="Arch.Backbone", task="rec"):
    return BACKBONES.get(name, f"{where}.name", task=task)


def create_backbone(name, where="Arch.Backbone", task="rec", **kwargs):
    """A backbone with random weights (`load_pretrained` fills them); `kwargs` checked against its factory."""
    factory = get_entry(name, where, task).factory
    check_kwargs(factory, kwargs, f"{where} ({name})")
    return factory(**kwargs)


def pretrained_cfg(name, task="rec"):
    return get_entry(name, task=task).pretrained


def load_pretrained(backbone, name, pretrained, where="Arch.Backbone.pretrained"):
    """`pretrained`: True (the registered weights) or a URL / path / package: file. Returns the count
    of tensors loaded. A classifier in the file that the backbone lacks is skipped."""
    return load_weights(backbone, name, pretrained_cfg(name), pretrained, where)


def check_preprocess(name, spec, where):
    """Refuse an eval pipeline whose normalisation differs from what the pretrained weights expect."""
    check_normalize(name, pretrained_cfg(name), spec, where)
