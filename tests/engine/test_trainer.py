"""The shared trainer: checkpoints, best_model by key metric, exact resume, per-term logging."""
import json
import os

import numpy as np
import paddle
import pytest

from ppshitu.engine import checkpoint as ckpt
from ppshitu.engine.trainer import Trainer


class ShuffledBatches:
    """A loader whose order depends on the epoch only (as the P×K sampler's does)."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.bs = x, y, batch_size
        self.batch_sampler = self
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.x) // self.bs

    def __iter__(self):
        order = np.random.default_rng(self.epoch).permutation(len(self.x))
        for i in range(len(self)):
            idx = order[i * self.bs:(i + 1) * self.bs]
            yield paddle.to_tensor(self.x[idx]), paddle.to_tensor(self.y[idx])


def _loss_fn(model, batch):
    x, y = batch
    out = model(x)
    # dropout makes the run depend on paddle's RNG, which resume must reproduce
    out = paddle.nn.functional.dropout(out, 0.2, training=True)
    ce = paddle.nn.functional.cross_entropy(out, y)
    reg = (out ** 2).mean() * 0.01
    return {"loss": ce + reg, "ce": ce, "reg": reg}


def _make(output_dir, epochs=4, evaluate=True):
    paddle.seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = paddle.nn.Sequential(paddle.nn.Linear(8, 16), paddle.nn.ReLU(), paddle.nn.Linear(16, 2))
    sched = paddle.optimizer.lr.CosineAnnealingDecay(0.1, T_max=epochs * 4)
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters())
    scores = iter([0.5, 0.7, 0.6, 0.9, 0.8, 0.95])

    def evaluate(m):
        return {"recall1": next(scores)}
    return Trainer(model, _loss_fn, opt, ShuffledBatches(x, y, 16), lr_scheduler=sched,
                   evaluate_fn=evaluate if evaluate else None, key_metric="recall1", epochs=epochs,
                   output_dir=str(output_dir), seed=3, show_progress=False)


def test_checkpoints_best_model_and_logged_terms(tmp_path):
    t = _make(tmp_path)
    history = t.train()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert all({"loss", "ce", "reg", "ips", "lr"} <= set(h) for h in history)
    assert all(h["ips"] > 0 for h in history)
    for name in ("latest", "epoch_1", "epoch_4", "best_model"):
        for ext in (".pdparams", ".pdopt", ".pdstates"):
            assert os.path.isfile(tmp_path / f"{name}{ext}"), name + ext
    best = json.loads((tmp_path / "best_model.pdstates").read_text())
    assert best["epoch"] == 4 and best["best_metric"] == pytest.approx(0.9)  # 0.5, 0.7, 0.6, 0.9
    assert json.loads((tmp_path / "latest.pdstates").read_text())["epoch"] == 4


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    full = _make(tmp_path / "full", evaluate=False)
    full.train()
    part = _make(tmp_path / "part", evaluate=False)
    part.epochs = 2
    part.train()
    resumed = _make(tmp_path / "resumed", evaluate=False)
    resumed.resume(str(tmp_path / "part" / "epoch_2"))
    assert resumed.epoch == 2 and resumed.current_lr() == pytest.approx(part.current_lr())
    history = resumed.train()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    a = full.model.state_dict()
    b = resumed.model.state_dict()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-6, err_msg=k)
    assert history[3]["loss"] == pytest.approx(full.history[3]["loss"], abs=1e-6)


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    t = _make(tmp_path, evaluate=False)
    with pytest.raises(ckpt.CheckpointError, match=r"epoch_9\.pdparams not found"):
        t.resume(str(tmp_path / "epoch_9"))
    (tmp_path / "bad.pdparams").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.WeightsError, match="cannot read"):
        ckpt.load_weights(t.model, str(tmp_path / "bad"))
    paddle.save({"other": paddle.zeros([2])}, str(tmp_path / "other.pdparams"))
    with pytest.raises(ckpt.WeightsError, match="lacks"):
        ckpt.load_weights(t.model, str(tmp_path / "other.pdparams"))


def _make_with_learnable_loss(output_dir, epochs=4):
    """A model trained with a loss that has its own parameter (SupCon's learnable temperature)."""
    from ppshitu.rec.losses import SupConLoss

    paddle.seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (np.arange(64) % 4).astype("int64")
    model = paddle.nn.Sequential(paddle.nn.Linear(8, 16), paddle.nn.ReLU(), paddle.nn.Linear(16, 8))
    loss = SupConLoss(temperature=0.1, learn_temperature=True)

    def loss_fn(m, batch):
        xb, yb = batch
        return {"loss": loss({"features": m(xb)}, yb).mean()}
    params = [p for _, p in ckpt.trained_parameters(model, loss)]
    opt = paddle.optimizer.Adam(0.05, parameters=params)
    return Trainer(model, loss_fn, opt, ShuffledBatches(x, y, 16), epochs=epochs, output_dir=str(output_dir),
                   seed=3, show_progress=False, loss_module=loss), loss


def test_a_loss_with_parameters_trains_and_resumes_exactly(tmp_path):
    full, full_loss = _make_with_learnable_loss(tmp_path / "full")
    full.train()
    t_full = float(full_loss.current_temperature().numpy()[0])
    assert abs(t_full - 0.1) > 1e-3  # the optimiser moved the loss's own parameter
    part, _ = _make_with_learnable_loss(tmp_path / "part")
    part.epochs = 2
    part.train()
    resumed, resumed_loss = _make_with_learnable_loss(tmp_path / "resumed")
    resumed.resume(str(tmp_path / "part" / "epoch_2"))
    resumed.train()
    assert float(resumed_loss.current_temperature().numpy()[0]) == pytest.approx(t_full, abs=1e-6)
    for k, v in full.model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), resumed.model.state_dict()[k].numpy(), atol=1e-6, err_msg=k)
