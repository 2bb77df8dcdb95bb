#!/usr/bin/env python
"""What one training step costs per variant of the recipe, side by side in one process (issue 27: cheaper epochs).

    python bench/bench_train_step_cost.py [--rounds 6] [--variants recipe frozen_backbone size_128]

Each variant is bench_rec_training.py's (the recipe configs/rec/EfficientNetLite0_demo.yaml with its overrides):
its model is built, then a forward + backward + SGD step on one batch of the recipe's size (32 images at the
variant's input size) is timed, variants interleaved round by round so each sees the same load; this process's
CPU time and wall time, median over rounds, as a ratio to the recipe. The recall of each variant comes from
bench_rec_training.py (bench/results/bench_rec_training_cheap.md). Writes bench/results/bench_train_step_cost.md.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def build(name):
    import paddle

    from bench_rec_training import RECIPE, VARIANTS
    from ppshitu.config import load_config
    from ppshitu.rec.task import build_model
    from ppshitu.schemas import TRAIN_SCHEMA

    cfg = load_config(RECIPE, VARIANTS[name][1], TRAIN_SCHEMA)
    model = build_model(cfg, class_num=40)
    model.train()
    params = [p for p in model.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.Momentum(learning_rate=1e-3, parameters=params)
    size = int(cfg.Global.image_shape[-1])
    return model, opt, size


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
    args = p.parse_args(argv)
    print(describe(), flush=True)
    paddle.set_device("cpu")
    rng = np.random.default_rng(0)
    built = {v: build(v) for v in args.variants}
    inputs = {v: paddle.to_tensor(rng.standard_normal((args.batch, 3, s, s)).astype("float32"))
              for v, (_, _, s) in built.items()}
    for v, (m, o, _) in built.items():  # warm-up
        step(m, o, inputs[v])
    wall, cpu = {v: [] for v in built}, {v: [] for v in built}
    for r in range(args.rounds):
        for v, (m, o, _) in built.items():
            t, c = time.perf_counter(), time.process_time()
            step(m, o, inputs[v])
            wall[v].append(time.perf_counter() - t)
            cpu[v].append(time.process_time() - c)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v} {wall[v][-1]:.2f} s" for v in built), flush=True)
    base_w, base_c = np.median(wall[args.variants[0]]), np.median(cpu[args.variants[0]])
    lines = ["# One training step per variant, side by side (issue 27: cheaper epochs)", "",
             f"{describe()}; load average {[round(x, 1) for x in os.getloadavg()]}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Batch {args.batch}, forward + backward + step, "
             f"variants interleaved over {args.rounds} rounds in one process, medians; ratios to "
             f"{args.variants[0]} (CPU: this process's CPU time, less disturbed by other jobs on the shared cores).",
             "", "| variant | input px | s / step (wall) | x | CPU s / step | x |", "|---|---|---|---|---|---|"]
    for v, (_, _, s) in built.items():
        w, c = np.median(wall[v]), np.median(cpu[v])
        lines.append(f"| {v} | {s} | {w:.2f} | {w / base_w:.2f} | {c:.2f} | {c / base_c:.2f} |")
    text = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / "bench_train_step_cost.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
