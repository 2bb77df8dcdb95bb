"""Losses against slow, obvious reference computations; no NaN at zero distances."""
import math

import numpy as np
import paddle
import pytest

from ppshitu.errors import ConfigError
from ppshitu.rec.heads import ArcMargin
from ppshitu.rec.losses import CELoss, CombinedLoss, TripletLossV2


def _ce_reference(logits, labels, eps):
    out = []
    for row, y in zip(logits, labels):
        logz = math.log(sum(math.exp(v) for v in row))
        target = [eps / len(row) + (1 - eps) * (j == y) for j in range(len(row))]
        out.append(-sum(t * (v - logz) for t, v in zip(target, row)))
    return out


def _triplet_reference(feats, labels, margin, normalize):
    if normalize:
        feats = [f / np.linalg.norm(f) for f in feats]
    out = []
    for i in range(len(feats)):
        d = [float(np.sqrt(((feats[i] - feats[j]) ** 2).sum())) for j in range(len(feats))]
        pos = [d[j] for j in range(len(feats)) if labels[j] == labels[i]]
        neg = [d[j] for j in range(len(feats)) if labels[j] != labels[i]]
        out.append(max(0.0, max(pos) - min(neg) + margin) if neg else 0.0)
    return out


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_matches_reference(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, 6)
    got = CELoss(epsilon=eps)({"logits": paddle.to_tensor(logits)}, paddle.to_tensor(labels)).numpy()
    np.testing.assert_allclose(got, _ce_reference(logits.tolist(), labels.tolist(), eps), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_batch_hard_triplet_matches_reference(normalize):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(8, 4)).astype("float32")
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    loss = TripletLossV2(margin=0.3, normalize_feature=normalize)
    got = loss({"features": paddle.to_tensor(feats)}, paddle.to_tensor(labels)).numpy()
    np.testing.assert_allclose(got, _triplet_reference(feats, labels, 0.3, normalize), rtol=1e-4, atol=1e-5)


def test_zero_distances_give_finite_gradients():
    feats = paddle.to_tensor(np.ones((4, 3), "float32"), stop_gradient=False)  # all pairwise distances 0
    loss = TripletLossV2(margin=0.5, normalize_feature=True)({"features": feats}, paddle.to_tensor([0, 0, 1, 1]))
    loss.mean().backward()
    assert np.allclose(loss.numpy(), 0.5, atol=1e-4)
    assert np.isfinite(feats.grad.numpy()).all()
    zero = paddle.zeros([2, 3])
    zero.stop_gradient = False
    out = TripletLossV2()({"features": zero}, paddle.to_tensor([0, 1]))
    out.mean().backward()
    assert np.isfinite(out.numpy()).all() and np.isfinite(zero.grad.numpy()).all()


def test_anchor_without_negative_is_skipped():
    feats = paddle.to_tensor(np.random.default_rng(2).normal(size=(3, 4)).astype("float32"))
    assert float(TripletLossV2()({"features": feats}, paddle.to_tensor([5, 5, 5])).sum()) == 0.0


def test_arcmargin_adds_the_margin_to_the_true_class_only():
    head = ArcMargin(4, 3, margin=0.2, scale=10.0)
    x = paddle.to_tensor(np.random.default_rng(3).normal(size=(2, 4)).astype("float32"))
    label = paddle.to_tensor([1, 2])
    head.eval()
    cos = head(x).numpy() / 10.0
    head.train()
    logits = head(x, label).numpy() / 10.0
    for i, y in enumerate([1, 2]):
        theta = math.acos(cos[i, y])
        expected = math.cos(theta + 0.2) if theta + 0.2 < math.pi else cos[i, y] - math.sin(0.2) * 0.2
        assert logits[i, y] == pytest.approx(expected, abs=1e-4)
        others = [j for j in range(3) if j != y]
        np.testing.assert_allclose(logits[i, others], cos[i, others], atol=1e-5)


def test_combined_loss_weights_and_separate_terms():
    rng = np.random.default_rng(4)
    outputs = {"logits": paddle.to_tensor(rng.normal(size=(4, 3)).astype("float32")),
               "features": paddle.to_tensor(rng.normal(size=(4, 5)).astype("float32"))}
    labels = paddle.to_tensor([0, 0, 1, 1])
    combined = CombinedLoss([{"CELoss": {"weight": 0.5}}, {"TripletLossV2": {"weight": 2.0, "margin": 0.4}}])
    terms = combined(outputs, labels)
    ce = float(CELoss()(outputs, labels).mean())
    tri = float(TripletLossV2(margin=0.4)(outputs, labels).mean())
    assert float(terms["CELoss"]) == pytest.approx(0.5 * ce, rel=1e-5)
    assert float(terms["TripletLossV2"]) == pytest.approx(2.0 * tri, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(0.5 * ce + 2.0 * tri, rel=1e-5)


@pytest.mark.parametrize("specs, match", [
    ([{"CELos": {"weight": 1.0}}], r"Loss.Train\[0\].*unknown loss 'CELos'.*did you mean CELoss"),
    ([{"TripletLossV2": {"weight": 1.0, "margn": 0.3}}], r"unknown key 'margn'.*did you mean.*margin"),
    ([{"CELoss": {"weight": -1}}], r"Loss.Train\[0\].CELoss: weight must be from 0 to 1000, got -1"),
    ([], r"at least one loss"),
])
def test_loss_config_errors(specs, match):
    with pytest.raises(ConfigError, match=match):
        CombinedLoss(specs, "Loss.Train")


def test_supcon_matches_a_slow_reference():
    from ppshitu.rec.losses import SupConLoss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = np.array([0, 0, 1, 1, 2, 2, 3, 9])  # the last anchor has no positive: contributes 0
    got = SupConLoss(temperature=0.2)({"features": paddle.to_tensor(x)}, paddle.to_tensor(y)).numpy()
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    want = []
    for i in range(8):
        others = [j for j in range(8) if j != i]
        logits = np.array([z[i] @ z[j] / 0.2 for j in others])
        logp = logits - np.log(np.exp(logits).sum())
        pos = [k for k, j in enumerate(others) if y[j] == y[i]]
        want.append(-np.mean(logp[pos]) if pos else 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
