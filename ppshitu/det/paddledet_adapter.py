"""The only module that imports paddledet (`ppdet`): it turns the `Arch` section of a
det config into ppdet layers (backbone, neck, head with its losses and assigners). The backbone comes from
the one backbone registry (ppshitu/engine/backbones.py, task det), which names ppdet's LCNet here (LCNET).

ppdet normally builds these through its YAML workspace, which the wheel ships no
configs for; here each part is a registry entry, so a config key is checked against
the real constructor and a typo names the nearest valid key. Parts are built bottom
up: the neck gets the backbone's channels, the head its neck's, and every part that
has `num_classes` gets the config's (ppdet shares it implicitly through the workspace).
"""
import contextlib
import copy
import inspect
import io

import paddle

from ..engine.backbone_base import BackboneEntry
from ..errors import ConfigError
from ..registry import Registry, check_kwargs, split_spec

with contextlib.redirect_stdout(io.StringIO()):  # ppdet's tracking modules print a numba warning
    from ppdet.modeling.assigners.atss_assigner import ATSSAssigner
    from ppdet.modeling.assigners.task_aligned_assigner import TaskAlignedAssigner
    from ppdet.modeling.backbones.lcnet import LCNet
    from ppdet.modeling.heads.pico_head import PicoFeat, PicoHeadV2
    from ppdet.modeling.losses.gfocal_loss import DistributionFocalLoss
    from ppdet.modeling.losses.iou_loss import GIoULoss
    from ppdet.modeling.losses.varifocal_loss import VarifocalLoss
    from ppdet.modeling.necks.csp_pan import CSPPAN
    from ppdet.modeling.necks.lc_pan import LCPAN

LCNET = BackboneEntry(LCNet)  # the backbone registry's entry (ppshitu/engine/backbones.py, task det)
NECKS = Registry("det neck")
HEADS = Registry("det head")
HEAD_PARTS = Registry("det head part")  # conv_feat, losses, assigners

NECKS.register()(LCPAN)
NECKS.register()(CSPPAN)
HEADS.register()(PicoHeadV2)
for _part in (PicoFeat, VarifocalLoss, DistributionFocalLoss, GIoULoss, ATSSAssigner, TaskAlignedAssigner):
    HEAD_PARTS.register()(_part)

# Head arguments that are themselves components, given as {name: X, ...kwargs}.
_HEAD_COMPONENTS = ("conv_feat", "loss_class", "loss_dfl", "loss_bbox", "static_assigner", "assigner")


class Upsample2x(paddle.nn.Layer):
    """Nearest x2 upsampling as reshape/expand: bit-identical to nn.Upsample, and unlike a
    PIR-exported nearest_interp it runs under oneDNN in Paddle Inference."""

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, 2, w, 2])
        return x.reshape([n, c, h * 2, w * 2])


def _build_part(lookup, spec, where, num_classes, **extra):
    """The part `spec` names; `lookup(name, where)` gives its class (a registry's get)."""
    name, kwargs = split_spec(spec, where)
    where = f"{where}.{name}"
    cls = lookup(name, where)
    check_kwargs(cls, kwargs, where, supplied=extra)
    params = inspect.signature(cls.__init__).parameters
    # ppdet's necks append to their default `spatial_scales` list: give every part fresh
    # copies of list defaults and of the config's values, or a second model is built wrong.
    kwargs = {k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v for k, v in kwargs.items()}
    for key, p in params.items():
        if isinstance(p.default, list) and key not in kwargs and key not in extra:
            kwargs[key] = list(p.default)
    if "num_classes" in params and "num_classes" not in kwargs:
        kwargs["num_classes"] = num_classes
    for key in _HEAD_COMPONENTS:
        default = params[key].default if key in params else None
        if isinstance(default, str) and key not in kwargs:  # a name only ppdet's workspace could resolve
            raise ConfigError(f"{where}: missing {key} (e.g. {{name: {default}, ...}})")
    return cls(**kwargs, **extra)


def build_parts(arch, num_classes, backbone_class, where="Arch"):
    """(backbone, neck, head) ppdet layers from the Arch section (see configs/det/); `backbone_class(name,
    where)` is the backbone registry's class for a name (det/model.py passes it: this module, named by that
    registry, does not import it)."""
    for key in ("backbone", "neck", "head"):
        if not isinstance(arch.get(key), dict):
            raise ConfigError(f"{where}.{key}: missing; a PicoDet needs backbone, neck and head "
                              f"sections like {{name: LCNet, scale: 0.75}}")
    backbone = _build_part(backbone_class, arch["backbone"], f"{where}.backbone", num_classes)
    neck = _build_part(NECKS.get, arch["neck"], f"{where}.neck", num_classes,
                       in_channels=[s.channels for s in backbone.out_shape])
    if hasattr(neck, "upsample"):
        neck.upsample = Upsample2x()
    name, head_kwargs = split_spec(arch["head"], f"{where}.head")
    head_kwargs = dict(head_kwargs)
    for key in _HEAD_COMPONENTS:
        if isinstance(head_kwargs.get(key), (dict, str)):
            head_kwargs[key] = _build_part(HEAD_PARTS.get, head_kwargs[key], f"{where}.head.{name}.{key}", num_classes)
    if head_kwargs.get("nms") is not None:
        raise ConfigError(f"{where}.head.{name}.nms: set NMS in {where}.nms (it runs outside ppdet, so it exports)")
    head = _build_part(HEADS.get, {name: head_kwargs}, f"{where}.head", num_classes)
    return backbone, neck, head
