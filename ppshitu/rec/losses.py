"""Metric-learning losses and their weighted combination (PaddleClas's `Loss.Train`).

Each loss maps (model outputs, labels) to per-sample values; `CombinedLoss` averages
them, applies the configured weights and returns every term by name plus the total.
"""
import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from ..config import Field
from ..errors import ConfigError
from ..registry import Registry, split_spec
from .heads import l2_normalize

LOSSES = Registry("loss")
LOSSES.add("ClipLoss", "ppshitu.clip.loss:ClipLoss")  # the text-image model's (configs/clip)
NUM = (int, float)
FEATURE_FROM = Field(str, choices=("features", "backbone"), doc="the embedding after the neck, or the backbone's")
# each loss's `weight` in Loss.Train (CombinedLoss takes it before the loss is built)
WEIGHT = Field(NUM, min_value=0, max_value=1000, doc="the loss's weight in the sum")


@LOSSES.register()
class CELoss(nn.Layer):
    """Cross-entropy on `logits`, with label smoothing `epsilon` (0 or None: none)."""

    CONFIG_SCHEMA = {"epsilon": Field((int, float, type(None)), min_value=0, max_value=1, max_exclusive=True,
                                      doc="label smoothing")}

    def __init__(self, epsilon=None):
        super().__init__()
        if epsilon is not None and not 0 <= epsilon < 1:
            raise ConfigError(f"Loss CELoss.epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon or 0.0

    def forward(self, outputs, labels):
        logits = outputs["logits"]
        labels = paddle.reshape(labels, [-1])
        logp = F.log_softmax(logits, axis=-1)
        target = F.one_hot(labels, logits.shape[-1])
        if self.epsilon:
            target = target * (1.0 - self.epsilon) + self.epsilon / logits.shape[-1]
        return -paddle.sum(target * logp, axis=-1)


def pairwise_distances(x):
    """Euclidean distances; clipped before the sqrt so equal vectors give 0, not a NaN gradient."""
    sq = paddle.sum(paddle.square(x), axis=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * paddle.matmul(x, x, transpose_y=True)
    return paddle.sqrt(paddle.clip(d2, min=1e-12))


@LOSSES.register()
class TripletLossV2(nn.Layer):
    """Batch-hard triplet loss: for each anchor, its farthest positive and nearest negative,
    max(0, d(a,p) - d(a,n) + margin). Anchors without a negative in the batch are skipped."""

    CONFIG_SCHEMA = {"margin": Field(NUM, min_value=0, max_value=100, doc="in embedding distance (at most 2 "
                                     "between normalized features)"),
                     "normalize_feature": Field(bool), "feature_from": FEATURE_FROM}

    def __init__(self, margin=0.5, normalize_feature=True, feature_from="features"):
        super().__init__()
        self.margin, self.normalize_feature, self.feature_from = margin, normalize_feature, feature_from

    def forward(self, outputs, labels):
        x = outputs[self.feature_from]
        if self.normalize_feature:
            x = l2_normalize(x)
        dist = pairwise_distances(x)
        labels = paddle.reshape(labels, [-1, 1])
        same = paddle.cast(labels == labels.t(), x.dtype)
        big = paddle.max(dist).detach() + 1.0
        hardest_pos = paddle.max(dist * same, axis=1)
        hardest_neg = paddle.min(dist + big * same, axis=1)
        has_neg = paddle.cast(paddle.sum(1.0 - same, axis=1) > 0, x.dtype)
        return F.relu(hardest_pos - hardest_neg + self.margin) * has_neg


@LOSSES.register()
class SupConLoss(nn.Layer):
    """Supervised contrastive loss (Khosla et al., 2020), InfoNCE with every same-label image of the
    batch as a positive: for anchor i, -mean over positives p of log softmax_j(s_ij / T)[p], j != i,
    on cosine similarities. Each image must find its partners among the whole batch, a signal that
    every step gives all P×K images, where a class proxy is updated once per epoch on small data (what
    made fine-tuning gain here instead of destroying the pretrained features).

    `learn_temperature`: T becomes a parameter (optimised and checkpointed with the model), started at
    `temperature` and kept in [0.01, 1]."""

    CONFIG_SCHEMA = {"temperature": Field(NUM, min_value=0, min_exclusive=True, max_value=1),
                     "learn_temperature": Field(bool), "feature_from": FEATURE_FROM}

    def __init__(self, temperature=0.05, learn_temperature=False, feature_from="features"):
        super().__init__()
        if not 0 < temperature <= 1:
            raise ConfigError(f"Loss SupConLoss.temperature must be in (0, 1], got {temperature}")
        self.feature_from = feature_from
        if learn_temperature:
            self.log_t = self.create_parameter([1], default_initializer=nn.initializer.Constant(math.log(temperature)))
        else:
            self.log_t = None
            self.temperature = float(temperature)

    def current_temperature(self):
        if self.log_t is None:
            return self.temperature
        return paddle.exp(paddle.clip(self.log_t, math.log(0.01), 0.0))

    def forward(self, outputs, labels):
        x = l2_normalize(outputs[self.feature_from])
        n = x.shape[0]
        sim = paddle.matmul(x, x, transpose_y=True) / self.current_temperature()
        eye = paddle.eye(n, dtype=x.dtype)
        sim = sim - 1e4 * eye  # an image is not its own candidate
        logp = sim - paddle.logsumexp(sim, axis=1, keepdim=True)
        labels = paddle.reshape(labels, [-1, 1])
        pos = paddle.cast(labels == labels.t(), x.dtype) * (1.0 - eye)
        count = paddle.sum(pos, axis=1)
        per_anchor = -paddle.sum(logp * pos, axis=1) / paddle.clip(count, min=1.0)
        return per_anchor * paddle.cast(count > 0, x.dtype)  # anchors without a positive add nothing


class CombinedLoss(nn.Layer):
    """`[{CELoss: {weight: 1.0, epsilon: 0.1}}, {TripletLossV2: {weight: 1.0, margin: 0.5}}]`
    -> callable returning {"CELoss": w*ce, "TripletLossV2": w*tri, "loss": sum}."""

    def __init__(self, specs, where="Loss.Train"):
        super().__init__()
        if not specs:
            raise ConfigError(f"{where}: at least one loss is required, e.g. [{{CELoss: {{weight: 1.0}}}}]")
        if not isinstance(specs, list):
            raise ConfigError(f"{where}: expected a list of {{LossName: {{weight: ...}}}}, got {specs!r}")
        self.names, self.weights, layers = [], [], []
        for i, spec in enumerate(specs):
            name, kwargs = split_spec(spec, f"{where}[{i}]")
            kwargs = dict(kwargs)
            weight = WEIGHT.check(kwargs.pop("weight", 1.0), "weight", f"{where}[{i}].{name}")
            layers.append(LOSSES.build(name, kwargs, where=f"{where}[{i}].{name}"))
            self.names.append(name if name not in self.names else f"{name}_{i}")
            self.weights.append(float(weight))
        self.losses = nn.LayerList(layers)

    def forward(self, outputs, labels):
        terms = {}
        for name, weight, loss in zip(self.names, self.weights, self.losses):
            terms[name] = weight * paddle.mean(loss(outputs, labels))
        terms["loss"] = paddle.add_n(list(terms.values()))
        return terms
