#!/usr/bin/env python
"""Recognition training under a CPU time budget: recall@1, mAP, MAP@R on unseen classes,
against the same network at random initialisation, and training images/s.

    python bench/bench_rec_training.py                      # 40 epochs, at most ~10 min, demo recipe
    python bench/bench_rec_training.py --epochs 10 --budget-s 120 -o Arch.Backbone.name=PPLCNet_x0_25

The schedule (cosine) is laid out over --epochs; --budget-s cuts training short after the
epoch in which it runs out, so choose --epochs to fit the budget on the machine at hand.

Data: the synthetic open-set recognition set (100 classes, 70 for training, 30 unseen),
generated once under bench/.cache/rec_100. Prints a table and writes
bench/results/bench_rec_training.md.
"""
import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ppshitu.config import load_config  # noqa: E402
from ppshitu.data import synthetic  # noqa: E402
from ppshitu.engine import rec_task  # noqa: E402
from ppshitu.schemas import TRAIN_SCHEMA  # noqa: E402


class TimeBudget:
    """Ends training after the epoch during which the budget runs out."""

    def __init__(self, seconds):
        self.seconds, self.start = seconds, None

    def before_train(self, trainer):
        self.start = time.perf_counter()

    def after_epoch(self, trainer):
        trainer.should_stop = time.perf_counter() - self.start >= self.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/rec/demo_rec.yaml"))
    parser.add_argument("--epochs", type=int, default=40, help="the schedule's length")
    parser.add_argument("--budget-s", type=float, default=600.0, help="training time cap (seconds)")
    parser.add_argument("--data", default=str(ROOT / "bench/.cache/rec_100"))
    parser.add_argument("--out", default=str(ROOT / "bench/.cache/rec_training_out"))
    parser.add_argument("-o", "--override", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = Path(args.data)
    if not (data / "train_list.txt").is_file():
        synthetic.make_recognition_set(data, num_classes=100, num_train_classes=70, views_per_class=8, seed=0)
    paths = [f"DataLoader.Train.dataset.image_root={data}",
             f"DataLoader.Train.dataset.cls_label_path={data}/train_list.txt"]
    for part in ("Query", "Gallery"):
        paths += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
                  f"DataLoader.Eval.{part}.dataset.cls_label_path={data}/test_list.txt"]
    overrides = paths + [f"Global.output_dir={args.out}", f"Global.epochs={args.epochs}"] + args.override
    cfg = load_config(args.config, overrides, TRAIN_SCHEMA)
    start = time.perf_counter()
    history = rec_task.train(cfg, hooks=[TimeBudget(args.budget_s)])
    train_s = time.perf_counter() - start
    final_cfg = load_config(args.config, overrides + [
        f"Global.pretrained_model={os.path.join(args.out, 'RecModel', 'latest')}"], TRAIN_SCHEMA)
    final = rec_task.evaluate(final_cfg)
    init = history[0]
    epochs = [h for h in history if h["epoch"] > 0]
    images = sum(h["ips"] * h["epoch_time"] for h in epochs)
    train_time = sum(h["epoch_time"] for h in epochs)
    rows = [("random init", init), (f"trained ({len(epochs)} epochs)", final)]
    lines = [f"# bench_rec_training: {cfg.Arch.Backbone.name} @ {cfg.Global.image_shape[1:]}, "
             f"budget {args.budget_s:.0f} s, {os.cpu_count()} CPU threads",
             "", f"config: {os.path.relpath(args.config, ROOT)} {' '.join(args.override)}",
             f"training: {len(epochs)} epochs, {train_time:.0f} s in epochs ({train_s:.0f} s with evaluation), "
             f"{images / train_time:.1f} images/s", "",
             "| model | recall@1 | recall@5 | mAP | MAP@R |", "|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['recall1']:.3f} | {m['recall5']:.3f} | {m['mAP']:.3f} | {m['MAP@R']:.3f} |")
    lines += ["", "recall@1 at each evaluation: " + ", ".join(f"epoch {h['epoch']}: {h['recall1']:.3f}"
                                                           for h in history if "recall1" in h)]
    text = "\n".join(lines) + "\n"
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "bench_rec_training.md").write_text(text)


if __name__ == "__main__":
    main()
