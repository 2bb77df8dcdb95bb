#!/usr/bin/env python
"""What one training step costs per variant of the recipe, side by side in one process (issue 27: cheaper epochs).

    python bench/bench_train_step_cost.py [--rounds 6] [--epochs 2] [--variants recipe frozen_backbone size_128]

Each variant is bench_rec_training.py's (the recipe configs/rec/EfficientNetLite0_demo.yaml with its overrides):
its model is built, then a forward + backward + SGD step on one batch of the recipe's size (32 images at the
variant's input size) is timed, variants interleaved round by round so each sees the same load; this process's
CPU time and wall time, median over rounds, as a ratio to the recipe. A variant with Global.image_size_schedule
is timed at each size it trains at and its figure is the mean step over `--epochs` epochs (e.g. [[1, 128]] over
2 epochs: half its steps at 128 px, half at 160). The recall of each variant comes from bench_rec_training.py
(bench/results/bench_rec_training_cheap*.md). Writes bench/results/bench_train_step_cost.md (and .json).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def build(name, epochs):
    """(model, optimizer, {size: the share of the run's steps at that size})."""
    import paddle

    from bench_rec_training import RECIPE, VARIANTS
    from ppshitu.config import load_config
    from ppshitu.rec.size_schedule import size_at
    from ppshitu.rec.task import build_model
    from ppshitu.schemas import TRAIN_SCHEMA

    cfg = load_config(RECIPE, VARIANTS[name][1], TRAIN_SCHEMA)
    model = build_model(cfg, class_num=40)
    model.train()
    params = [p for p in model.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.Momentum(learning_rate=1e-3, parameters=params)
    crop = [op for op in cfg.DataLoader.Train.dataset.transform_ops if "RandCropImage" in op][0]["RandCropImage"]
    sizes = [size_at(cfg.Global.image_size_schedule, e, (crop["size"],) * 2)[0] for e in range(1, epochs + 1)]
    return model, opt, {s: sizes.count(s) / epochs for s in sorted(set(sizes))}


def step(model, opt, x):
    out = model(x)
    loss = (out["features"] ** 2).mean()  # the step's cost is the network's, whatever the loss
    loss.backward()
    opt.step()
    opt.clear_grad()


def main(argv=None):
    import paddle

    from ppshitu.utils.cpu import describe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--variants", nargs="+", default=["recipe", "frozen_backbone", "size_128"])
    p.add_argument("--epochs", type=int, default=2, help="the run a size schedule's steps are averaged over")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_train_step_cost.md"))
    args = p.parse_args(argv)
    print(describe(), flush=True)
    paddle.set_device("cpu")
    rng = np.random.default_rng(0)
    built = {v: build(v, args.epochs) for v in args.variants}
    sizes = sorted({s for _, _, shares in built.values() for s in shares})
    inputs = {s: paddle.to_tensor(rng.standard_normal((args.batch, 3, s, s)).astype("float32")) for s in sizes}
    runs = [(v, s) for v, (_, _, shares) in built.items() for s in shares]
    for v, s in runs:  # warm-up
        step(built[v][0], built[v][1], inputs[s])
    wall, cpu = {r: [] for r in runs}, {r: [] for r in runs}
    for r in range(args.rounds):
        for v, s in runs:
            t, c = time.perf_counter(), time.process_time()
            step(built[v][0], built[v][1], inputs[s])
            wall[v, s].append(time.perf_counter() - t)
            cpu[v, s].append(time.process_time() - c)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v}@{s} {wall[v, s][-1]:.2f} s" for v, s in runs),
              flush=True)
    rows = []
    for v, (_, _, shares) in built.items():  # a run's mean step: each size's median, weighted by its epochs
        w = sum(share * np.median(wall[v, s]) for s, share in shares.items())
        c = sum(share * np.median(cpu[v, s]) for s, share in shares.items())
        rows.append({"variant": v, "sizes": {str(s): share for s, share in shares.items()}, "wall_s": w, "cpu_s": c})
    base_w, base_c = rows[0]["wall_s"], rows[0]["cpu_s"]
    for row in rows:
        row.update(wall_x=row["wall_s"] / base_w, cpu_x=row["cpu_s"] / base_c)
    head = (f"{describe()}; load average {[round(x, 1) for x in os.getloadavg()]}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Batch {args.batch}, forward + backward + step, "
            f"variants interleaved over {args.rounds} rounds in one process, medians; a size schedule's figure is "
            f"its mean step over {args.epochs} epochs; ratios to {args.variants[0]} (CPU: this process's CPU time, "
            f"less disturbed by other jobs on the shared cores).")
    lines = ["# One training step per variant, side by side (issue 27: cheaper epochs)", "", head, "",
             "| variant | input px (share of steps) | s / step (wall) | x | CPU s / step | x |", "|---|---|---|---|---|---|"]
    for row in rows:
        px = ", ".join(s if share == 1 else f"{s} ({share:.0%})" for s, share in row["sizes"].items())
        lines.append(f"| {row['variant']} | {px} | {row['wall_s']:.2f} | {row['wall_x']:.2f} | {row['cpu_s']:.2f} | "
                     f"{row['cpu_x']:.2f} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"conditions": head, "rows": rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
