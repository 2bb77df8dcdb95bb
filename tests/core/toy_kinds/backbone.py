"""Two toy backbones: a recognition one ([N, C] features) and a detection one (ppdet's protocol: feature maps
at strides 8, 16, 32 and their out_shape)."""
from collections import namedtuple

import paddle
from paddle import nn

from ppshitu.engine.backbone_base import BackboneEntry, PretrainedCfg

Shape = namedtuple("Shape", "channels stride")


class ToyNet(nn.Layer):
    def __init__(self, width=16):
        super().__init__()
        self.conv = nn.Conv2D(3, width, 3, stride=4, padding=1)

    def forward(self, x):
        return paddle.flatten(nn.functional.adaptive_avg_pool2d(nn.functional.relu(self.conv(x)), 1), 1)


class ToyDetNet(nn.Layer):
    def __init__(self, channels=(16, 24, 32)):
        super().__init__()
        widths = (3,) + tuple(channels)
        self.stem = nn.Conv2D(3, 3, 3, stride=4, padding=1)
        self.stages = nn.LayerList([nn.Conv2D(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(3)])
        self.out_shape = [Shape(c, s) for c, s in zip(channels, (8, 16, 32))]

    def forward(self, inputs):
        x, outs = self.stem(inputs["image"]), []
        for stage in self.stages:
            x = nn.functional.relu(stage(x))
            outs.append(x)
        return outs


TOY_NET = BackboneEntry(ToyNet, PretrainedCfg(source=None, input_size=(64, 64)))
TOY_DET_NET = BackboneEntry(ToyDetNet)
