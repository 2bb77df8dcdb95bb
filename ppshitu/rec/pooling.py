"""Global pooling of a feature map [N, C, H, W] into a descriptor [N, C].

The average is a 1x1 adaptive average pool (`pool2d`), not `mean` over H, W: an exported model's `mean` runs
under oneDNN through a support check (phi::ReduceMeanCheckIfOneDNNSupport) that Paddle 3.3 has print its own
name to stdout, from C++, the first time each predictor runs. Same numbers; models exported before still hold
the `mean` (and print it once per predictor).
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from ..errors import ConfigError, did_you_mean


def _spatial_mean(x):
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


class AvgPool(nn.Layer):
    def forward(self, x):
        return _spatial_mean(x)


class GeM(nn.Layer):
    """Generalised-mean pooling (Radenović et al., TPAMI 2018): (mean over H, W of x^p)^(1/p).

    p = 1 is average pooling and p -> inf approaches max pooling; p is learned, so training picks how
    much weight the strongest activations get. Activations are clamped to eps first: x^p needs x > 0,
    and the gradient w.r.t. p goes through log(x)."""

    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.p = self.create_parameter([1], default_initializer=nn.initializer.Constant(p))

    def forward(self, x):
        pooled = _spatial_mean(paddle.pow(x.clip(min=self.eps), self.p))
        return paddle.pow(pooled, 1.0 / self.p)

    def extra_repr(self):
        return f"p={float(self.p.numpy()[0]):.4f}, eps={self.eps}"


POOLINGS = {"avg": AvgPool, "gem": GeM}


def build_pooling(name, p=3.0):
    if name not in POOLINGS:
        raise ConfigError(f"pooling: unknown {name!r}; choose one of {sorted(POOLINGS)}{did_you_mean(name, POOLINGS)}")
    return GeM(p) if name == "gem" else POOLINGS[name]()
