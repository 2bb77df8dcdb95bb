"""Data-parallel training on CPU: `python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py`
(gloo) on the demo recipe, two short epochs on a small synthetic set.

* The P×K sampler gives each rank a disjoint share of one global batch; the shares together are the
  batch one process with batch_size x 2 draws (same images, same augmentation keys).
* The two-rank run's losses (the mean over the ranks, what rank 0 logs) equal, to float precision, a
  single process that splits each global batch in two and averages the halves' losses: what
  DataParallel computes (gradients averaged, BatchNorm statistics per rank). Against a plain single
  process on the same global batch of 64 they differ by the batch split alone (BatchNorm over 32
  instead of 64 images, batch-hard triplets mined in 32): measured on this recipe at random
  initialisation, seeds 42 (the recipe's), 1, 2, 3: 1.7-4.5 % on the first step, at most 8.1 % on
  any of the first four, 0.2-1.2 % on their mean. Stated tolerance: first step 8 %, mean of the
  first four steps 3 %.
* Only rank 0 logs and writes checkpoints; a run resumed from epoch_1 repeats epoch 2 exactly.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dataset.synthetic import make_recognition_set
from ppshitu.rec.data.sampler import PKSampler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "rec", "demo_rec.yaml")
STEP = re.compile(r"INFO epoch (\d+) \[(\d+)/\d+\] lr \S+ .*?\bloss (-?\d+\.\d+)")
FIRST_STEP_TOL, MEAN_TOL = 0.08, 0.03


class _Labels:
    def __init__(self, labels):
        self.labels = labels

    def indices_by_label(self):
        out = {}
        for i, v in enumerate(self.labels):
            out.setdefault(v, []).append(i)
        return out


@pytest.mark.parametrize("classes", [20, 12])
def test_pk_sampler_ranks_share_one_global_batch(classes):
    labels = [c for c in range(classes) for _ in range(8 + c % 3)]
    ranks = [PKSampler(_Labels(labels), 32, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    single = PKSampler(_Labels(labels), 64, 4, seed=3, rank=0, world_size=1) if classes >= 16 else None
    for s in ranks + [single] * (single is not None):
        s.set_epoch(5)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == len(ranks[0]) == len(ranks[1]) > 0   # the same number of steps on every rank
    for share0, share1 in zip(a, b):
        for share in (share0, share1):
            per_class = {}
            for i, _ in share:
                per_class[labels[i]] = per_class.get(labels[i], 0) + 1
            assert len(share) == 32 and sorted(per_class.values()) == [4] * 8  # P x K on each rank
        keys0, keys1 = {k for _, k in share0}, {k for _, k in share1}
        assert not keys0 & keys1                                       # disjoint shares
        if classes >= 16:
            assert not {labels[i] for i, _ in share0} & {labels[i] for i, _ in share1}
    if classes >= 16:  # enough classes for 2 x 8 per step: together exactly one process's batch of 64
        assert [s0 + s1 for s0, s1 in zip(a, b)] == list(single)


def test_only_rank_0_saves(tmp_path, monkeypatch):
    import paddle

    from ppshitu.engine.trainer import Trainer

    monkeypatch.setattr(paddle.distributed, "get_rank", lambda *a, **k: 1)
    model = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    loader = [{"x": paddle.ones([4, 3])}] * 2
    trainer = Trainer(model, lambda m, batch: {"loss": m(batch["x"]).mean()}, opt, loader, epochs=2,
                      output_dir=str(tmp_path / "out"), show_progress=False)
    assert not trainer.is_main
    trainer.train()
    trainer.save("extra")
    assert os.listdir(tmp_path / "out") == []


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    make_recognition_set(root / "data", num_classes=30, views_per_class=8, image_size=64, num_train_classes=20,
                         seed=0)
    return root


def overrides(data_root, out, batch_size, **extra):
    d = data_root / "data"
    o = {"Global.device": "cpu", "Global.epochs": 2, "Global.max_iters_per_epoch": 2,
         "Global.eval_during_train": False, "Global.save_interval": 1, "Global.print_batch_step": 1,
         "Global.output_dir": str(out), "DataLoader.Train.sampler.batch_size": batch_size,
         "DataLoader.Train.dataset.image_root": f"{d}/",
         "DataLoader.Train.dataset.cls_label_path": f"{d}/train_list.txt",
         "DataLoader.Eval.Query.dataset.image_root": f"{d}/",
         "DataLoader.Eval.Query.dataset.cls_label_path": f"{d}/test_list.txt",
         "DataLoader.Eval.Gallery.dataset.image_root": f"{d}/",
         "DataLoader.Eval.Gallery.dataset.cls_label_path": f"{d}/test_list.txt", **extra}
    return [f"{k}={v}" for k, v in o.items()]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def step_losses(text):
    return {(int(e), int(s)): float(v) for e, s, v in STEP.findall(text)}


def train_single(data_root, out, batch_size, **extra):
    args = [a for o in overrides(data_root, out, batch_size, **extra) for a in ("-o", o)]
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", CONFIG, *args], env=env(),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return step_losses(run.stderr)


def train_distributed(data_root, out, log_dir, **extra):
    args = [a for o in overrides(data_root, out, 32, **extra) for a in ("-o", o)]
    run = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                          str(log_dir), os.path.join(ROOT, "tools", "train.py"), "-c", CONFIG, *args], env=env(),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    logs = [(log_dir / f"workerlog.{r}").read_text() for r in range(2)]
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:] + logs[0][-2000:] + logs[1][-2000:]
    return logs


EMULATE = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from ppshitu.config import load_config
from ppshitu.schemas import TRAIN_SCHEMA
cfg = load_config(os.path.join(sys.argv[1], "configs/rec/demo_rec.yaml"), json.loads(sys.argv[2]), TRAIN_SCHEMA)
from ppshitu.engine import checkpoint as ckpt
from ppshitu.engine.optim import build_optimizer
from ppshitu.engine.trainer import Trainer, seed_everything
from ppshitu.rec import task
from ppshitu.rec.data.loader import build_dataloader
from ppshitu.rec.losses import CombinedLoss

task.set_device(cfg)
g = cfg.Global
seed_everything(g.seed or 0)   # as rec.task.train does, so the weights start the same
loader, dataset = build_dataloader(cfg.DataLoader.Train, "DataLoader.Train", g.seed or 0, train=True, rank=0,
                                   world_size=1)
model = task.build_model(cfg, class_num=dataset.class_num)
losses = CombinedLoss(cfg.Loss.Train, "Loss.Train")
steps = min(len(loader), g.max_iters_per_epoch or len(loader))
params = [p for _, p in ckpt.trained_parameters(model, losses) if not p.stop_gradient]
optimizer, scheduler = build_optimizer(cfg.Optimizer, params, g.epochs, steps)
seen = []

def loss_fn(net, batch):  # two ranks' halves, each through the network on its own; losses averaged
    n = batch["image"].shape[0] // 2
    parts = [losses(net(batch["image"][r * n:(r + 1) * n], batch["label"][r * n:(r + 1) * n]),
                    batch["label"][r * n:(r + 1) * n]) for r in range(2)]
    return {k: (parts[0][k] + parts[1][k]) / 2 for k in parts[0]}

class Record:
    def after_step(self, trainer, values):
        seen.append([trainer.epoch + 1, trainer.epoch_step, values["loss"]])

Trainer(model, loss_fn, optimizer, loader, lr_scheduler=scheduler, epochs=g.epochs, output_dir=g.output_dir,
        max_iters_per_epoch=g.max_iters_per_epoch, seed=g.seed, save_interval=0, show_progress=False,
        hooks=[Record()], loss_module=losses).train()
print("LOSSES " + json.dumps(seen))
'''


def emulate_two_ranks(data_root, out):
    run = subprocess.run([sys.executable, "-c", EMULATE, ROOT, json.dumps(overrides(data_root, out, 64))], env=env(),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("LOSSES ")][-1]
    return {(e, s): v for e, s, v in json.loads(line[len("LOSSES "):])}


def test_two_ranks_train_like_one_process_with_the_global_batch_and_resume(data, tmp_path):
    logs = train_distributed(data, tmp_path / "dp", tmp_path / "log")
    dp = step_losses(logs[0])
    assert sorted(dp) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # only rank 0 logs the run and writes checkpoints (one set, in the one output directory)
    assert not step_losses(logs[1]) and "epoch 1 done" not in logs[1] and "epoch 1 done" in logs[0]
    saved = sorted(os.listdir(tmp_path / "dp" / "RecModel"))
    assert saved == sorted([".ppshitu-outputs.json", "config.yaml"] + [f"{n}.{ext}" for n in ("epoch_1", "epoch_2", "latest")
                                              for ext in ("pdopt", "pdparams", "pdstates")])

    # exactly DataParallel's arithmetic (the log prints 4 decimals)
    split = emulate_two_ranks(data, tmp_path / "emulated")
    for key, value in dp.items():
        assert abs(value - split[key]) <= 2e-4, (key, value, split[key])
    history = json.loads((tmp_path / "dp" / "RecModel" / "latest.pdstates").read_text())["history"]
    for entry in history:
        mean = np.mean([split[(entry["epoch"], s)] for s in (1, 2)])
        assert entry["loss"] == pytest.approx(mean, rel=1e-5)  # the history is the global batch's

    # ...and within the stated tolerance of one process with the same global batch of 64
    single = train_single(data, tmp_path / "single", 64)
    first = abs(dp[(1, 1)] - single[(1, 1)]) / single[(1, 1)]
    mean = abs(np.mean(list(dp.values())) - np.mean(list(single.values()))) / np.mean(list(single.values()))
    print(f"two ranks vs one process with the global batch: first step {first:.2%}, mean of 4 steps {mean:.2%}")
    assert first <= FIRST_STEP_TOL and mean <= MEAN_TOL, (dp, single)

    # resume: epoch 2 again from the epoch_1 checkpoint, under two ranks
    logs = train_distributed(data, tmp_path / "resumed", tmp_path / "log2",
                             **{"Global.checkpoints": str(tmp_path / "dp" / "RecModel" / "epoch_1")})
    resumed = step_losses(logs[0])
    assert sorted(resumed) == [(2, 1), (2, 2)]
    for key, value in resumed.items():
        assert abs(value - dp[key]) <= 1e-4, (key, value, dp[key])
