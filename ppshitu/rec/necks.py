"""Necks: map backbone features to the embedding (PaddleClas's `Arch.Neck`)."""
import paddle
from paddle import nn

from ..config import Field
from ..registry import Registry

NECKS = Registry("neck")
MAX_WIDTH = 65536  # features of an embedding or a layer


@NECKS.register()
class FC(nn.Layer):
    """Linear projection `embedding_size` (backbone width) -> `class_num` (the embedding size:
    PaddleClas's naming)."""

    CONFIG_SCHEMA = {
        "embedding_size": Field(int, min_value=1, max_value=MAX_WIDTH, doc="input width (filled in from the "
                                "layer before; a config value must agree)"),
        "class_num": Field(int, min_value=1, max_value=MAX_WIDTH, doc="output width: the embedding size"),
        "bias": Field(bool),
    }

    def __init__(self, embedding_size, class_num, bias=True):
        super().__init__()
        self.in_features, self.out_features = embedding_size, class_num
        self.fc = nn.Linear(embedding_size, class_num,
                            weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierNormal()),
                            bias_attr=None if bias else False)

    def forward(self, x):
        return self.fc(paddle.flatten(x, 1))


@NECKS.register()
class BNNeck(nn.Layer):
    """BatchNorm without a trainable shift (bag-of-tricks re-ID): the triplet loss sees the
    features before it, the classifier the normalized ones after it when placed last."""

    CONFIG_SCHEMA = {"num_features": Field(int, min_value=1, max_value=MAX_WIDTH, doc="width (filled in from the "
                                           "layer before; a config value must agree)")}

    def __init__(self, num_features):
        super().__init__()
        self.in_features = self.out_features = num_features
        self.bn = nn.BatchNorm1D(num_features, momentum=0.9, epsilon=1e-5,
                                 bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0),
                                                            trainable=False))

    def forward(self, x):
        return self.bn(paddle.flatten(x, 1))
