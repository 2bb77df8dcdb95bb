"""The demo mainbody detector: how well it finds objects in held-out generated scenes
(COCO AP50 / AP@[.5:.95]) and how fast it runs (ms per image on CPU), plus how long
it took to train from scratch.

    .venv/bin/python bench/bench_det.py                    # train configs/det/picodet_demo.yaml, then measure
    .venv/bin/python bench/bench_det.py --weights output/det_demo/best_model   # measure trained weights
    .venv/bin/python bench/bench_det.py --quick            # 1 short epoch on few scenes: a smoke run

Held-out sets: `val` (new scenes of the training classes 0-59), `unseen` (scenes of
classes 60-99, never seen in training: a mainbody detector must find any object) and
`unseen_photos` (classes 60-99 pasted on real photographs, scikit-image's samples).
Besides COCO AP, the share of objects that the deployed predictor (threshold 0.2, 5 boxes,
like predict_system) boxes at IoU >= 0.5: what bounds the recognition system.
Speed: DetPredictor.predict on the exported model (decode excluded; preprocess, network
with NMS, post-processing included), Paddle Inference with oneDNN, 2 threads.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_search import table  # noqa: E402
from harness import machine_info, timed  # noqa: E402

from ppshitu.config import load_config  # noqa: E402
from dataset.synthetic import make_scenes  # noqa: E402
from ppshitu.schemas import TRAIN_SCHEMA  # noqa: E402

DATA = BENCH / ".cache" / "det_scenes"
CONFIG = BENCH.parent / "configs/det/picodet_demo.yaml"


def det_scenes(num_train=2000, num_val=100, root=DATA, with_train=True):
    """train / val (classes 0-59) and unseen (classes 60-99) scene sets, generated once."""
    root = Path(root) / f"train{num_train}_val{num_val}"
    sets = {"train": (num_train, range(60), "train", False), "val": (num_val, range(60), "val", False),
            "unseen": (num_val, range(60, 100), "unseen", False),
            "unseen_photos": (num_val, range(60, 100), "unseen_photos", True)}
    for name, (n, classes, split, photos) in sets.items():
        if (with_train or name != "train") and not (root / f"{split}.json").is_file():
            make_scenes(root, num_images=n, object_classes=list(classes), split=split, photo_backgrounds=photos)
    if with_train and not (root / "train_photos.json").is_file():  # varied training scenes: half on photographs
        make_scenes(root, num_images=num_train, object_classes=list(range(60)), split="train_photos",
                    photo_backgrounds=0.5)
    return {name: str(root / f"{split}.json") for name, (_, _, split, _) in sets.items()}


def box_recall(det, scenes_json, iou_thr=0.5):
    """The share of annotated objects that some predicted box overlaps at IoU >= iou_thr."""
    from ppshitu.utils.boxes import box_iou
    from ppshitu.utils.image import read_image

    coco = json.loads(Path(scenes_json).read_text())
    by_image = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    found = total = 0
    for im in coco["images"]:
        boxes = det.predict(read_image(Path(scenes_json).parent / "images" / im["file_name"]))
        for gt in by_image.get(im["id"], []):
            total += 1
            found += any(box_iou(b[:4], gt) >= iou_thr for b in boxes)
    return found / max(total, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", default=str(CONFIG))
    p.add_argument("-o", "--override", action="append", default=[], help="config override (repeatable)")
    p.add_argument("--weights", help="measure these weights instead of training")
    p.add_argument("--train-scenes", type=int, default=2000)
    p.add_argument("--val-scenes", type=int, default=100)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--photo-train", action="store_true", help="train on scenes half of which are pasted on photographs")
    p.add_argument("--out", default=str(BENCH / "results"))
    args = p.parse_args()
    from ppshitu.det import task
    from ppshitu.infer.det import DetPredictor
    from ppshitu.utils.image import read_image

    if args.quick:
        args.train_scenes, args.val_scenes = 32, 8
        args.override += ["Global.epochs=1", "Global.max_iters_per_epoch=4", "DataLoader.Train.sampler.batch_size=8"]
    sets = det_scenes(args.train_scenes, args.val_scenes, with_train=args.weights is None)
    work = BENCH / ".cache" / "det_run"
    base = [f"DataLoader.Train.dataset.anno_path={sets['train']}", f"DataLoader.Eval.dataset.anno_path={sets['val']}",
            f"Global.output_dir={work}"]
    if args.photo_train:  # the scenes on photographs instead of the generated-clutter ones
        base[0] = f"DataLoader.Train.dataset.anno_path={sets['train'].replace('train.json', 'train_photos.json')}"
    info = machine_info()
    train_s, epochs = None, None
    weights = args.weights
    if weights is None:
        cfg = load_config(args.config, base + args.override, TRAIN_SCHEMA)
        start = time.perf_counter()
        history = task.train(cfg)
        train_s, epochs = time.perf_counter() - start, len(history)
        weights = str(work / "best_model")
    rows, result = [], {"machine": info, "config": args.config, "overrides": args.override, "weights": weights,
                        "train_seconds": train_s, "epochs": epochs, "train_scenes": args.train_scenes}
    inference_dir = str(work / "inference")
    det = None
    for name in ("val", "unseen", "unseen_photos"):
        cfg = load_config(args.config, base + args.override + [f"DataLoader.Eval.dataset.anno_path={sets[name]}",
                                                              f"Global.pretrained_model={weights}"], TRAIN_SCHEMA)
        metrics = task.evaluate(cfg)
        if det is None:
            task.export(cfg, inference_dir)
            det = DetPredictor(inference_dir, threshold=0.2, max_det_results=5, cpu_threads=2)
        metrics["box_recall"] = box_recall(det, sets[name])
        result[name] = metrics
        rows.append([name, f"{metrics['AP50']:.3f}", f"{metrics['mAP']:.3f}", f"{metrics['AP75']:.3f}",
                     f"{metrics['box_recall']:.3f}"])
    coco = json.loads(Path(sets["val"]).read_text())
    images = [read_image(Path(sets["val"]).parent / "images" / im["file_name"]) for im in coco["images"][:20]]
    state = {"i": 0}

    def one():
        det.predict(images[state["i"] % len(images)])
        state["i"] += 1

    ms = 1000 * timed(one, min_seconds=3.0, min_iters=20, warmup=3)
    pre_ms = 1000 * timed(lambda: det.preprocess(images[0]), min_seconds=0.5, min_iters=20)
    result.update(ms_per_image=ms, preprocess_ms=pre_ms, input_size=det.preprocess.input_size)
    size = "x".join(map(str, det.preprocess.input_size))
    trained = (f"trained {epochs} epochs on {args.train_scenes} scenes in {train_s / 60:.1f} min"
               if train_s is not None else f"weights {weights}")
    text = (table(rows, ["held-out scenes", "AP50", "AP@[.5:.95]", "AP75", "objects boxed (IoU 0.5)"])
            + f"\n\n{args.val_scenes} scenes per set ({os.path.basename(args.config)}, {trained}; "
              f"overrides: {' '.join(args.override) or 'none'})\n"
            + f"DetPredictor at {size}: {ms:.1f} ms/image (preprocess {pre_ms:.2f} ms), oneDNN, 2 threads, "
              f"{info['cpu']}, load avg at start {info['load_avg_at_start'][0]:.1f}\n")
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    name = "bench_det_quick" if args.quick else "bench_det"
    with open(os.path.join(args.out, name + ".md"), "w", encoding="utf-8") as f:
        f.write(f"# bench/bench_det.py {' '.join(sys.argv[1:])}\n\n{text}")
    with open(os.path.join(args.out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
