"""RecModel from PaddleClas's `Arch` section: backbone -> (stop layer) -> neck -> head.

    Arch: {name: RecModel, infer_output_key: features, infer_add_softmax: False,
           Backbone: {name: MobileNetV1, pretrained: False,     # True: the registered weights, or a file
                      lr_mult: 1.0, freeze_bn: False,           # fine-tuning: a lower LR, fixed BN statistics,
                      freeze_stages: 0},                        # the stem + first N stages fixed (EfficientNetLite)
           BackboneStopLayer: {name: flatten},
           Neck: {name: FC, embedding_size: 1024, class_num: 512},   # or a list of necks
           Head: {name: ArcMargin, embedding_size: 512, class_num: 100, margin: 0.2, scale: 30}}

`Neck.embedding_size` / `Head.embedding_size` may be left out: they are taken from the
layer before. Given but wrong, they are a config error naming the right value.
"""
import inspect

import paddle
from paddle import nn

from ..engine import backbones
from ..errors import ConfigError, did_you_mean
from ..registry import split_spec
from .heads import HEADS, l2_normalize_exportable
from .necks import NECKS

_ARCH_KEYS = ("name", "Backbone", "BackboneStopLayer", "Neck", "Head", "infer_output_key", "infer_add_softmax",
              "head_feature_from")
# Arch.Backbone keys RecModel reads itself; the others go to the backbone's constructor
_BACKBONE_OWN_KEYS = ("name", "pretrained", "lr_mult", "freeze_bn", "freeze_stages", "use_ssld")


class RecModel(nn.Layer):
    def __init__(self, backbone, neck=None, head=None, head_feature_from="neck", freeze_backbone_bn=False):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.head_feature_from = head_feature_from
        self.freeze_backbone_bn = freeze_backbone_bn

    def _fix_backbone_bn(self):
        # small fine-tuning batches (P×K) give noisy statistics: keep ImageNet's running mean/var. Done at
        # each training forward, since paddle's train() on a wrapper (DataParallel) only flips flags below it.
        for layer in self.backbone.sublayers():
            if isinstance(layer, (nn.BatchNorm2D, nn.BatchNorm, nn.BatchNorm1D)):
                layer.eval()

    def forward(self, x, label=None):
        if self.training and self.freeze_backbone_bn:
            self._fix_backbone_bn()
        feats = paddle.flatten(self.backbone(x), 1)
        out = {"backbone": feats}
        out["features"] = self.neck(feats) if self.neck is not None else feats
        if self.head is not None:
            source = out["backbone"] if self.head_feature_from == "backbone" else out["features"]
            out["logits"] = self.head(source, label)
        return out

    def embed(self, x):
        """The L2-normalized retrieval embedding (what export and evaluation use)."""
        return l2_normalize_exportable(self.forward(x)["features"])


class EmbeddingNet(nn.Layer):
    """The exported graph: image batch -> L2-normalized embedding (no head, no label input)."""

    def __init__(self, rec_model):
        super().__init__()
        self.model = rec_model

    def forward(self, x):
        return self.model.embed(x)


def _feature_width(backbone, image_shape):
    backbone.eval()
    with paddle.no_grad():
        out = backbone(paddle.zeros([1] + list(image_shape), dtype="float32"))
    backbone.train()
    return int(paddle.flatten(out, 1).shape[1])


def _build_gear(registry, spec, width, where):
    name, kwargs = split_spec(spec, where)
    kwargs = dict(kwargs)
    key = "num_features" if name == "BNNeck" else "embedding_size"
    if kwargs.setdefault(key, width) != width:
        raise ConfigError(f"{where}.{name}.{key} is {kwargs[key]}, but its input has {width} features: "
                          f"set it to {width} or leave it out")
    return registry.build(name, kwargs, where=f"{where}.{name}")


def _freeze_stages(backbone, name, n):
    """Arch.Backbone.freeze_stages: the stem and the first n stages fixed (a backbone offers it with a
    freeze_stages(n) method and num_stages: the EfficientNetLite ones)."""
    stages = getattr(backbone, "num_stages", None) if callable(getattr(backbone, "freeze_stages", None)) else None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= (stages or 0):
        valid = f"0 (none) to {stages} ({name}'s stages: n fixes the stem and the first n)" if stages else \
            f"0: {name} has no stages to freeze (the EfficientNetLite backbones have)"
        raise ConfigError(f"Arch.Backbone.freeze_stages must be an integer from {valid}, got {n!r}")
    if n:
        backbone.freeze_stages(n)


def _check_own_key_typos(name, kwargs):
    """A misspelt RecModel backbone key (lr_mult, freeze_stages, ...) named as such, not as a key the
    backbone's constructor lacks."""
    accepted = inspect.signature(backbones.get_entry(name).factory).parameters
    for key in kwargs:
        hint = did_you_mean(key, _BACKBONE_OWN_KEYS, "Arch.Backbone.")
        if hint and key not in accepted:
            raise ConfigError(f"Arch.Backbone: unknown key '{key}'{hint}")


def build_rec_model(arch, image_shape=(3, 224, 224), class_num=None, with_head=True):
    """RecModel from the `Arch` section. `class_num`, when given, fills a head's missing class_num;
    `with_head=False` leaves the (training-only) head out, for evaluation and export."""
    if not isinstance(arch, dict):
        raise ConfigError(f"Arch must be a mapping, got {arch!r}")
    unknown = sorted(set(arch) - set(_ARCH_KEYS))
    if unknown:
        raise ConfigError(f"Arch: unknown keys {unknown}; valid: {', '.join(_ARCH_KEYS)}")
    if arch.get("name", "RecModel") != "RecModel":
        raise ConfigError(f"Arch.name: only RecModel is a recognition model, got {arch.get('name')!r}")
    if "Backbone" not in arch:
        raise ConfigError("Arch.Backbone is required, e.g. {name: MobileNetV1, pretrained: False}")
    bb_name, bb_kwargs = split_spec(arch["Backbone"], "Arch.Backbone")
    bb_kwargs = dict(bb_kwargs)
    weights = bb_kwargs.pop("pretrained", False)
    lr_mult = bb_kwargs.pop("lr_mult", 1.0)
    freeze_bn = bb_kwargs.pop("freeze_bn", False)
    freeze_stages = bb_kwargs.pop("freeze_stages", 0)
    if bb_kwargs.pop("use_ssld", False):
        raise ConfigError("Arch.Backbone.use_ssld: SSLD weights are not offered; pretrained: True loads "
                          "PaddleClas's standard ImageNet weights")
    if not isinstance(lr_mult, (int, float)) or lr_mult < 0:
        raise ConfigError(f"Arch.Backbone.lr_mult must be a number >= 0, got {lr_mult!r}")
    _check_own_key_typos(bb_name, bb_kwargs)
    backbone = backbones.create_backbone(bb_name, **bb_kwargs)
    if weights:
        backbones.load_pretrained(backbone, bb_name, weights)
    if arch.get("BackboneStopLayer"):
        stop_name, _ = split_spec(arch["BackboneStopLayer"], "Arch.BackboneStopLayer")
        from .backbones import paddleclas_adapter
        paddleclas_adapter.stop_after(backbone, stop_name)
    _freeze_stages(backbone, bb_name, freeze_stages)
    for param in backbone.parameters():
        # paddle's optimizers scale each parameter's step by its learning_rate attribute
        param.optimize_attr["learning_rate"] = float(lr_mult)
        if lr_mult == 0:
            param.stop_gradient = True
    width = _feature_width(backbone, image_shape)
    backbone_width = width
    necks = arch.get("Neck")
    neck_layers = []
    for i, spec in enumerate(necks if isinstance(necks, list) else [necks] if necks else []):
        layer = _build_gear(NECKS, spec, width, f"Arch.Neck[{i}]" if isinstance(necks, list) else "Arch.Neck")
        neck_layers.append(layer)
        width = layer.out_features
    neck = None if not neck_layers else neck_layers[0] if len(neck_layers) == 1 else nn.Sequential(*neck_layers)
    head = None
    feature_from = arch.get("head_feature_from", "neck")
    if arch.get("Head") and with_head:
        name, kwargs = split_spec(arch["Head"], "Arch.Head")
        if class_num is not None and "class_num" not in kwargs:
            kwargs = {**kwargs, "class_num": class_num}
        head_in = backbone_width if feature_from == "backbone" else width
        head = _build_gear(HEADS, {name: kwargs}, head_in, "Arch.Head")
    model = RecModel(backbone, neck, head, feature_from, freeze_backbone_bn=bool(freeze_bn))
    model.embedding_size = width
    model.backbone_name = bb_name
    return model
