"""CLIP's symmetric contrastive loss with a learnable temperature (registered in rec/losses.py's LOSSES as
ClipLoss, so `Loss.Train: [{ClipLoss: {temperature: 0.07}}]` builds it like any loss).

For a batch of N (image, caption) pairs: cross-entropy of each image over the N captions and of each caption
over the N images, averaged. A pair of the same combination (`labels`, the same attributes) is a positive too,
its target weight shared with the diagonal, since its caption describes the image equally well.
"""
import math

import paddle
from paddle import nn

from ..config import Field
from ..errors import ConfigError

NUM = (int, float)


class ClipLoss(nn.Layer):
    CONFIG_SCHEMA = {"temperature": Field(NUM, min_value=0.01, max_value=1, doc="the starting temperature"),
                     "learn_temperature": Field(bool, doc="T is a parameter, kept in [0.01, 1]")}

    def __init__(self, temperature=0.07, learn_temperature=True):
        super().__init__()
        if not 0.01 <= temperature <= 1:
            raise ConfigError(f"Loss ClipLoss.temperature must be in [0.01, 1], got {temperature}")
        self.log_t = self.create_parameter([1], default_initializer=nn.initializer.Constant(math.log(temperature)))
        self.log_t.stop_gradient = not learn_temperature

    def temperature(self):
        return paddle.exp(paddle.clip(self.log_t, math.log(0.01), 0.0))

    def forward(self, outputs, labels):
        logits = paddle.matmul(outputs["image"], outputs["text"], transpose_y=True) / self.temperature()
        labels = paddle.reshape(labels, [-1, 1])
        target = paddle.cast(labels == labels.t(), logits.dtype)
        target = target / paddle.sum(target, axis=1, keepdim=True)  # symmetric: rows and columns alike
        i2t = -paddle.sum(target * nn.functional.log_softmax(logits, axis=1), axis=1)
        t2i = -paddle.sum(target * nn.functional.log_softmax(logits, axis=0), axis=0)
        return (i2t + t2i) / 2
