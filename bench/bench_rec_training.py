#!/usr/bin/env python
"""Recognition fine-tuning on unseen classes: off the shelf (epoch 0, the untrained pretrained network)
against fine-tuned (best epoch by unseen-class recall@1), per variant of the recipe.

    python bench/bench_rec_training.py                                  # the recipe and its ablations
    python bench/bench_rec_training.py --variants recipe gem --epochs 4
    python bench/bench_rec_training.py --data DIR                       # any PaddleClas list-file set with
                                                                        # train_list.txt / test_list.txt

Every variant is the recipe (configs/rec/EfficientNetLite0_demo.yaml) with a few overrides, trained on
the training classes and evaluated on classes it never saw (query = gallery = test_list.txt, each
image against all others). Data: the demo's synthetic set (40 training classes, 20 unseen, 8 views),
generated under bench/.cache when missing. Prints a table and writes bench/results/bench_rec_training.md.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset import synthetic  # noqa: E402
from ppshitu.config import load_config  # noqa: E402
from ppshitu.schemas import TRAIN_SCHEMA  # noqa: E402

RECIPE = ROOT / "configs/rec/EfficientNetLite0_demo.yaml"
VARIANTS = {
    "recipe": ("the recipe: SupCon + triplet, backbone LR x0.1, BN frozen, avg pool, FC 512, 160 px", []),
    "lr_mult_1": ("backbone at the neck's LR", ["Arch.Backbone.lr_mult=1.0"]),
    "bn_train": ("BatchNorm statistics updated", ["Arch.Backbone.freeze_bn=False"]),
    "gem": ("GeM pooling (learnable p, init 3)", ["Arch.Backbone.pooling=gem"]),
    "ce_arcmargin": ("CE on an ArcMargin head + triplet (PaddleClas's retrieval losses)",
                     ["Loss.Train=[{CELoss: {weight: 1.0, epsilon: 0.1}}, {TripletLossV2: {weight: 1.0, margin: 0.2}}]",
                      "Arch.Head={name: ArcMargin, margin: 0.2, scale: 30}"]),
    "plus_ce": ("the recipe + CE (weight 0.5) on an ArcMargin head",
                ["Loss.Train=[{SupConLoss: {weight: 1.0, temperature: 0.05}}, {TripletLossV2: {weight: 1.0, margin: 0.2}}, "
                 "{CELoss: {weight: 0.5, epsilon: 0.1}}]", "Arch.Head={name: ArcMargin, margin: 0.2, scale: 30}"]),
    "supcon_only": ("SupCon alone (no triplet)", ["Loss.Train=[{SupConLoss: {weight: 1.0, temperature: 0.05}}]"]),
    "emb_128": ("embedding 128", ["Arch.Neck=[{FC: {class_num: 128}}]"]),
    "size_224": ("224 px input (the weights' own size)", ["Global.image_shape=[3, 224, 224]",
                 "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=224",
                 "DataLoader.Eval.Query.dataset.transform_ops.1.ResizeImage.size=224",
                 "DataLoader.Eval.Gallery.dataset.transform_ops.1.ResizeImage.size=224"]),
    "no_warmup": ("no warmup", ["Optimizer.lr.warmup_epoch=0"]),
    # cheaper epochs (issue 27): no backward pass through the backbone, or fewer pixels per image
    "frozen_backbone": ("backbone frozen (lr_mult 0: no backward through it), neck trained",
                        ["Arch.Backbone.lr_mult=0.0"]),
    "size_128": ("128 px input (train and eval)", ["Global.image_shape=[3, 128, 128]",
                 "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=128",
                 "DataLoader.Eval.Query.dataset.transform_ops.1.ResizeImage.size=128",
                 "DataLoader.Eval.Gallery.dataset.transform_ops.1.ResizeImage.size=128"]),
    # cheaper epochs, second round (issue 27): the early, high-resolution stages fixed (no backward there), and
    # smaller images for the first epoch only (evaluation at 160 px throughout)
    "freeze_2": ("stem + stages 1-2 frozen (Arch.Backbone.freeze_stages 2)", ["Arch.Backbone.freeze_stages=2"]),
    "freeze_3": ("stem + stages 1-3 frozen (Arch.Backbone.freeze_stages 3)", ["Arch.Backbone.freeze_stages=3"]),
    "sched_128": ("epoch 1 at 128 px, then 160 (Global.image_size_schedule [[1, 128]])",
                  ["Global.image_size_schedule=[[1, 128]]"]),
    "freeze_2_sched_128": ("freeze_stages 2 + epoch 1 at 128 px", ["Arch.Backbone.freeze_stages=2",
                                                                   "Global.image_size_schedule=[[1, 128]]"]),
    "freeze_3_sched_128": ("freeze_stages 3 + epoch 1 at 128 px", ["Arch.Backbone.freeze_stages=3",
                                                                   "Global.image_size_schedule=[[1, 128]]"]),
    "mobilenet_scratch": ("MobileNetV1_x0_25 @64 from scratch (the old demo recipe)", None),
}
DEFAULT = ["recipe", "lr_mult_1", "bn_train", "gem", "ce_arcmargin", "plus_ce", "emb_128"]


def data_overrides(data):
    out = [f"DataLoader.Train.dataset.image_root={data}/", f"DataLoader.Train.dataset.cls_label_path={data}/train_list.txt"]
    for part in ("Query", "Gallery"):
        out += [f"DataLoader.Eval.{part}.dataset.image_root={data}/",
                f"DataLoader.Eval.{part}.dataset.cls_label_path={data}/test_list.txt"]
    return out


def run_variant(name, data, out_dir, epochs, seed=None):
    from ppshitu.rec import task as rec_task

    overrides = VARIANTS[name][1]
    config = RECIPE if overrides is not None else ROOT / "configs/rec/demo_rec.yaml"
    seeded = [f"Global.seed={seed}"] if seed is not None else []  # another replicate: the run-to-run noise
    cfg = load_config(config, data_overrides(data) + [f"Global.output_dir={out_dir}/{name}", f"Global.epochs={epochs}",
                                                      "Global.save_interval=0"] + (overrides or []) + seeded,
                      TRAIN_SCHEMA)
    start = time.perf_counter()
    history = rec_task.train(cfg)
    minutes = (time.perf_counter() - start) / 60
    init = history[0]
    trained = [h for h in history if h["epoch"] > 0 and "recall1" in h]
    best = max(trained, key=lambda h: h["recall1"])
    ips = sum(h["ips"] * h["epoch_time"] for h in trained) / sum(h["epoch_time"] for h in trained)
    return {"variant": name + (f" (seed {seed})" if seed is not None else ""),
            "what": VARIANTS[name][0] + f" ({epochs} epochs)", "init": init, "best": best, "minutes": minutes, "ips": ips,
            "curve": [round(h["recall1"], 3) for h in history if "recall1" in h]}


def table(rows, data, epochs):
    lines = [f"# bench_rec_training: fine-tuning on unseen classes ({os.cpu_count()} CPU threads)", "",
             f"data: {os.path.relpath(data, ROOT)}; {epochs} epochs unless the row says; recall@1 / mAP / MAP@R on the unseen classes "
             f"(each query against all other test images); epoch 0 = off the shelf, best = best epoch "
             f"(best_model); minutes include the per-epoch evaluations.", "",
             "| variant | what | off-the-shelf R@1 | fine-tuned R@1 | mAP (0 → best) | MAP@R (0 → best) | "
             "train img/s | minutes | R@1 per epoch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i, b = r["init"], r["best"]
        lines.append(f"| {r['variant']} | {r['what']} | {i['recall1']:.3f} | **{b['recall1']:.3f}** (ep {b['epoch']}) | "
                     f"{i['mAP']:.3f} → {b['mAP']:.3f} | {i['MAP@R']:.3f} → {b['MAP@R']:.3f} | {r['ips']:.1f} | "
                     f"{r['minutes']:.1f} | {', '.join(map(str, r['curve']))} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=DEFAULT, choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data", default=str(ROOT / "bench/.cache/rec_demo"))
    parser.add_argument("--out", default=str(ROOT / "bench/.cache/rec_training_out"))
    parser.add_argument("--results", default=str(ROOT / "bench/results/bench_rec_training.md"))
    parser.add_argument("--append", action="store_true", help="add rows to the results' existing table")
    parser.add_argument("--seed", type=int, default=None, help="Global.seed for every variant (default: the "
                        "recipe's); a second seed measures the run-to-run noise")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    data = Path(args.data)
    if not (data / "train_list.txt").is_file():  # the demo's set (tools/demo.py makes the same)
        synthetic.make_recognition_set(data, num_classes=60, views_per_class=8, image_size=96, num_train_classes=40,
                                       gallery_views=3, seed=0)
    previous = Path(args.results).with_suffix(".json")
    rows = json.loads(previous.read_text()) if args.append and previous.is_file() else []
    for name in args.variants:
        rows.append(run_variant(name, data, args.out, args.epochs, args.seed))
        text = table(rows, data, args.epochs)
        print(text, flush=True)
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(text)
        Path(args.results).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
