"""Heads: classifiers over the embedding, used only by training losses (`Arch.Head`)."""
import math

import paddle
from paddle import nn

from ..config import Field
from ..registry import Registry

HEADS = Registry("head")
NUM = (int, float)
MAX_CLASSES = 10_000_000
MAX_WIDTH = 65536  # features of an embedding or a layer
# what every head takes: its input width (filled in from the neck or backbone; a config value must agree)
# and its classes (filled in from the training list when left out)
HEAD_SCHEMA = {
    "embedding_size": Field(int, min_value=1, max_value=MAX_WIDTH, doc="the head's input width"),
    "class_num": Field(int, min_value=1, max_value=MAX_CLASSES, doc="classes (default: the training list's)"),
    "bias": Field(bool),
}


def l2_normalize(x, axis=1, eps=1e-12):
    """x / ||x|| for training: a zero vector maps to zero with a finite gradient (eps inside the sqrt)."""
    return x / paddle.sqrt(paddle.sum(paddle.square(x), axis=axis, keepdim=True) + eps)


def l2_normalize_exportable(x, eps=1e-12):
    """x / ||x|| over axis 1 (zero stays zero) with ops that trace under both PIR and the legacy
    exporter: measured in Paddle 3.3.1, legacy to_static fails on sum, sqrt, matmul and
    F.normalize, and passes linalg.norm, square, mean, division."""
    return x / (paddle.linalg.norm(x, p=2, axis=1, keepdim=True) + eps)


@HEADS.register()
class FC(nn.Layer):
    CONFIG_SCHEMA = HEAD_SCHEMA

    def __init__(self, embedding_size, class_num, bias=True):
        super().__init__()
        self.class_num = class_num
        self.fc = nn.Linear(embedding_size, class_num,
                            weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierNormal()),
                            bias_attr=None if bias else False)

    def forward(self, x, label=None):
        return self.fc(x)


@HEADS.register()
class ArcMargin(nn.Layer):
    """Additive angular margin (ArcFace): logits scale*cos(theta + margin) for the true class,
    scale*cos(theta) for the others; plain scaled cosines at eval or without labels."""

    CONFIG_SCHEMA = {
        **{k: HEAD_SCHEMA[k] for k in ("embedding_size", "class_num")},
        "margin": Field(NUM, min_value=0, max_value=1.5, doc="radians added to the true class's angle (0.15-0.5 "
                        "in practice; past pi/2 the margined logit is below every other class's)"),
        "scale": Field(NUM, min_value=0, min_exclusive=True, max_value=1000,
                       doc="the logits are cosines times this (PaddleClas: 30-80)"),
        "easy_margin": Field(bool),
    }

    def __init__(self, embedding_size, class_num, margin=0.5, scale=80.0, easy_margin=False):
        super().__init__()
        self.margin, self.scale, self.easy_margin = margin, scale, easy_margin
        self.class_num = class_num
        self.weight = self.create_parameter([embedding_size, class_num],
                                            default_initializer=nn.initializer.XavierNormal())

    def forward(self, x, label=None):
        cos = paddle.matmul(l2_normalize(x), l2_normalize(self.weight, axis=0))
        if not self.training or label is None:
            return cos * self.scale
        sin = paddle.sqrt(paddle.clip(1.0 - paddle.square(cos), min=1e-6))
        phi = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        if self.easy_margin:
            phi = paddle.where(cos > 0, phi, cos)
        else:  # beyond pi - margin, cos(theta + m) is no longer monotonic: use a linear penalty
            phi = paddle.where(cos > -math.cos(self.margin), phi, cos - math.sin(self.margin) * self.margin)
        one_hot = nn.functional.one_hot(paddle.reshape(label, [-1]), self.class_num)
        return (one_hot * phi + (1.0 - one_hot) * cos) * self.scale
