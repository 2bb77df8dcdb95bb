"""A toy loss, neck and pooling: classes as rec/losses.py, rec/necks.py and rec/pooling.py hold them (the test
registers them the way those modules do: @LOSSES.register(), @NECKS.register(), an entry in POOLINGS)."""
import paddle
from paddle import nn


class ToyLoss(nn.Layer):
    """Per-sample squared norm of the features, times `scale` (a parameter of its own config)."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, outputs, labels):
        return self.scale * (outputs["features"] ** 2).sum(axis=1)


class ToyNeck(nn.Layer):
    """Halves the width (the neck's input width comes in as embedding_size, as for FC)."""

    def __init__(self, embedding_size):
        super().__init__()
        self.in_features, self.out_features = embedding_size, embedding_size // 2
        self.fc = nn.Linear(self.in_features, self.out_features)

    def forward(self, x):
        return self.fc(paddle.flatten(x, 1))


class ToyPool(nn.Layer):
    """Max over the feature map."""

    def forward(self, x):
        return x.max(axis=[2, 3])


class ToyInvert:
    """A data transform (rec/data/transforms.py's shape: (image, rng) -> image): the photographic negative."""

    def __init__(self, keep_alpha=True):
        self.keep_alpha = keep_alpha

    def __call__(self, img, rng):
        return 255 - img
