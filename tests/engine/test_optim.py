"""Optimizers and LR schedules from the Optimizer section: values per step, config errors."""
import math

import paddle
import pytest

from ppshitu.engine.optim import build_optimizer
from ppshitu.errors import ConfigError


def _params():
    return paddle.nn.Linear(3, 2).parameters()


def test_cosine_with_warmup_per_iteration():
    opt2, sched2 = build_optimizer({"name": "Momentum", "lr": {"name": "Cosine", "learning_rate": 0.1,
                                                               "warmup_epoch": 1}}, _params(), 3, 4)
    got = []
    for _ in range(12):
        got.append(opt2.get_lr())
        sched2.step()
    assert got[:4] == pytest.approx([0.0, 0.025, 0.05, 0.075])  # linear warmup over epoch 1
    cos = [0.1 * (1 + math.cos(math.pi * i / 8)) / 2 for i in range(8)]
    assert got[4:] == pytest.approx(cos, abs=1e-7)


def test_multistep_milestones_are_epochs():
    opt, sched = build_optimizer({"name": "Momentum", "lr": {"name": "MultiStepDecay", "learning_rate": 0.01,
                                                             "milestones": [2, 3], "gamma": 0.5}},
                                 _params(), epochs=4, step_each_epoch=5)
    got = []
    for _ in range(20):
        got.append(opt.get_lr())
        sched.step()
    assert got == pytest.approx([0.01] * 10 + [0.005] * 5 + [0.0025] * 5)


def test_regularizer_and_adamw():
    opt, _ = build_optimizer({"name": "Momentum", "lr": {"name": "Cosine", "learning_rate": 0.1},
                              "regularizer": {"name": "L2", "coeff": 0.0005}}, _params(), 2, 2)
    # Momentum folds an L2Decay into its own update
    assert opt._regularization_method == "l2_decay" and opt._regularization_coeff == pytest.approx(0.0005)
    opt, _ = build_optimizer({"name": "AdamW", "weight_decay": 0.01, "lr": {"name": "Cosine", "learning_rate": 1e-3}},
                             _params(), 2, 2)
    assert isinstance(opt, paddle.optimizer.AdamW)


@pytest.mark.parametrize("spec, match", [
    ({"name": "Momentun", "lr": 0.1}, r"unknown optimizer 'Momentun'.*did you mean Momentum"),
    ({"name": "Momentum"}, r"Optimizer.lr is required"),
    ({"name": "Momentum", "lr": {"name": "Cosine", "learning_rate": 0.1, "warmup": 1}},
     r"Optimizer.lr.Cosine: unknown key 'warmup'.*did you mean.*warmup_epoch"),
    ({"name": "Momentum", "lr": 0.1, "regularizer": {"name": "L3", "coeff": 1e-4}}, r"regularizer.name must be L2"),
    ({"name": "AdamW", "lr": 0.1, "regularizer": {"name": "L2", "coeff": 1e-4}}, r"AdamW decays weights itself"),
])
def test_optimizer_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_optimizer(spec, _params(), 2, 2)
