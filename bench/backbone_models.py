"""The recipe's larger backbones, EfficientNet-Lite1 and Lite2, trained exactly as the demo's Lite0 was, for the
query-time options table (bench_query_options.py --backbones; issue 27).

    .venv/bin/python bench/backbone_models.py lite1 lite2      # train + export the missing ones (cached)

Same data (the demo's synthetic set: 40 training classes, tools/demo.py's seed), same recipe
(configs/rec/EfficientNetLite0_demo.yaml: 6 epochs at 160 px, best epoch by unseen-class recall@1, as
`make demo-models` keeps it); only Arch.Backbone.name differs. Lite0 is the committed models/demo/rec (that recipe's
output). Each model is exported under bench/.cache/backbones/<name>/inference with train.json beside it (off-the-shelf
and fine-tuned recall@1 on the unseen classes, training images/s and minutes, the CPU it ran on).
"""
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CACHE = ROOT / "bench" / ".cache" / "backbones"
DATA = ROOT / "bench" / ".cache" / "rec_demo"  # the demo's set (bench_rec_training.py makes the same)
BACKBONES = {"lite0": "EfficientNetLite0", "lite1": "EfficientNetLite1", "lite2": "EfficientNetLite2"}


def model_dir(name):
    """The inference model of backbone `name` (lite0: the committed demo model; others trained when missing)."""
    if name == "lite0":
        return ROOT / "models" / "demo" / "rec"
    out = CACHE / name / "inference"
    if not (CACHE / name / "train.json").is_file():
        train(name)
    return out


def record(name):
    """train.json of a trained backbone, or None (lite0: see models/demo/README.md)."""
    path = CACHE / name / "train.json"
    return json.loads(path.read_text()) if path.is_file() else None


def train(name):
    from bench_rec_training import RECIPE, data_overrides

    from dataset import synthetic
    from ppshitu.config import load_config
    from ppshitu.rec import task as rec_task
    from ppshitu.schemas import TRAIN_SCHEMA
    from ppshitu.utils.cpu import describe

    if not (DATA / "train_list.txt").is_file():
        synthetic.make_recognition_set(DATA, num_classes=60, views_per_class=8, image_size=96, num_train_classes=40,
                                       gallery_views=3, seed=0)
    runs = CACHE / name / "runs"
    overrides = data_overrides(DATA) + [f"Global.output_dir={runs}", "Global.save_interval=0",
                                        f"Arch.Backbone.name={BACKBONES[name]}"]
    cfg = load_config(RECIPE, overrides, TRAIN_SCHEMA)
    load = os.getloadavg()[0]
    start, cpu0 = time.perf_counter(), time.process_time()
    history = rec_task.train(cfg)
    minutes, cpu_minutes = (time.perf_counter() - start) / 60, (time.process_time() - cpu0) / 60
    trained = [h for h in history if h["epoch"] > 0 and "recall1" in h]
    best = max(trained, key=lambda h: h["recall1"])
    weights = sorted(runs.glob("**/best_model.pdparams"))[0]
    rec_task.export(load_config(RECIPE, overrides + [f"Global.pretrained_model={str(weights)[:-len('.pdparams')]}"],
                                TRAIN_SCHEMA), str(CACHE / name / "inference"))
    ips = sum(h["ips"] * h["epoch_time"] for h in trained) / sum(h["epoch_time"] for h in trained)
    out = {"backbone": BACKBONES[name], "off_the_shelf_recall1": history[0]["recall1"],
           "best_recall1": best["recall1"], "best_epoch": best["epoch"], "train_images_per_s": ips,
           "minutes": minutes, "cpu_minutes": cpu_minutes, "load_at_start": round(load, 2), "cpu": describe(),
           "curve": [round(h["recall1"], 3) for h in history if "recall1" in h]}
    (CACHE / name / "train.json").write_text(json.dumps(out, indent=1, default=float))
    print(f"{name}: off the shelf R@1 {out['off_the_shelf_recall1']:.3f}, fine-tuned {out['best_recall1']:.3f} "
          f"(epoch {best['epoch']}), {minutes:.1f} min", flush=True)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["lite1", "lite2"]:
        print(arg, model_dir(arg), flush=True)
