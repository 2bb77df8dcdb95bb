#!/usr/bin/env python
"""The whole job end to end on generated data (`make demo`):

1. generate synthetic objects (train classes / unseen test classes) and scenes of test classes;
2. reuse the demo models in models/demo/ (or, with --retrain, fine-tune the recognition model from the
   installed ImageNet EfficientNet-Lite0 weights with configs/rec/EfficientNetLite0_demo.yaml, and with
   --with-detector also train the detector with configs/det/picodet_effnet_lite0_demo.yaml);
3. build a gallery from some test classes, recognise the scenes;
4. append more classes to the gallery — no retraining — and recognise the scenes again;
5. print the results and the evaluation figures; draw labelled images into demo_output/.

Classes never added to the gallery stay in the scenes, to show they come out "unknown".
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppshitu.cli import run_main  # noqa: E402
from ppshitu.config import load_config  # noqa: E402
from ppshitu.schemas import INFER_SCHEMA  # noqa: E402

NUM_CLASSES, NUM_TRAIN = 60, 40            # classes 0-39 train the embedding; 40-59 are never seen
FIRST = list(range(40, 50))                # the gallery at first
APPENDED = list(range(50, 57))             # added later, without retraining
NEVER = list(range(57, 60))                # never in the gallery: must come out "unknown"
REC_CONFIG = "configs/rec/EfficientNetLite0_demo.yaml"
DET_CONFIG = "configs/det/picodet_effnet_lite0_demo.yaml"


def sh(*args):
    """Run a project tool as a user would, echoing it."""
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def _generate_here(folder, marker):
    """Whether the demo generates its data into `folder`: yes when it is new or empty; no when it holds
    `marker` (data an earlier run generated, read and checked then); anything else is refused, so that the
    demo never writes over, nor reads as its own, files it did not make (a user's folder given as --data)."""
    from ppshitu.errors import PPShiTuError
    from ppshitu.utils.files import check_input_file

    path = os.path.join(folder, marker)
    if os.path.lexists(path):
        check_input_file(path, "--data:", PPShiTuError)  # a FIFO or a device: said so, never read
        return False
    if os.path.lexists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise PPShiTuError(f"--data: {folder} holds files the demo did not make (no {marker}): give --data a new "
                           f"or empty folder, where the demo generates its data")
    return True


def make_data(data):
    from dataset.synthetic import make_recognition_set, make_scenes

    rec, scenes = os.path.join(data, "rec"), os.path.join(data, "scenes")
    if _generate_here(rec, "gallery_list.txt"):
        make_recognition_set(rec, num_classes=NUM_CLASSES, views_per_class=8, image_size=96,
                             num_train_classes=NUM_TRAIN, gallery_views=3, seed=0)
    if _generate_here(scenes, "val.json"):
        make_scenes(scenes, num_images=30, image_size=(240, 320), objects_per_image=(1, 4),
                    object_classes=FIRST + APPENDED + NEVER, seed=1, split="val")
    return rec, os.path.join(scenes, "val.json")


def train_models(data, models, smoke=False, detector=False):
    """Fine-tune and export the recognition model (make demo-models), and with `detector` train and
    export the detector too (about 30 minutes more). `smoke`: one short epoch each and few scenes,
    to check the recipes run (tests)."""
    runs = os.path.join(data, "runs")  # checkpoints, beside the generated data
    quick = ["-o", "Global.epochs=1", "-o", "Global.max_iters_per_epoch=2"] if smoke else []
    rec_data = os.path.join(data, "rec")
    sh("tools/train.py", "-c", REC_CONFIG, *quick, "-o", f"DataLoader.Train.dataset.image_root={rec_data}/",
       "-o", f"DataLoader.Train.dataset.cls_label_path={rec_data}/train_list.txt",
       "-o", f"DataLoader.Eval.Query.dataset.image_root={rec_data}/",
       "-o", f"DataLoader.Eval.Query.dataset.cls_label_path={rec_data}/test_list.txt",
       "-o", f"DataLoader.Eval.Gallery.dataset.image_root={rec_data}/",
       "-o", f"DataLoader.Eval.Gallery.dataset.cls_label_path={rec_data}/test_list.txt",
       "-o", f"Global.output_dir={runs}/rec/")
    sh("tools/export_model.py", "-c", REC_CONFIG, "-o", f"Global.pretrained_model={best_model(runs + '/rec')}",
       "--out", os.path.join(models, "rec"), "--overwrite")
    if detector or not os.path.isdir(os.path.join(models, "det")):
        train_detector(data, models, runs, quick, smoke)


def train_detector(data, models, runs, quick, smoke):
    from dataset.synthetic import make_scenes

    det_data = os.path.join(data, "det")
    if not os.path.isfile(os.path.join(det_data, "val.json")):  # detector scenes use training classes only
        make_scenes(det_data, num_images=20 if smoke else 800, image_size=(240, 320), objects_per_image=(1, 5),
                    object_classes=range(NUM_TRAIN), seed=2, split="train", photo_backgrounds=0.5)
        make_scenes(det_data, num_images=10 if smoke else 100, image_size=(240, 320), objects_per_image=(1, 5),
                    object_classes=range(NUM_TRAIN), seed=2, split="val")
    det_cfg = load_config(DET_CONFIG)
    overrides = []
    for split in ("Train", "Eval"):
        ds = det_cfg["DataLoader"][split]["dataset"]
        for key, value in (("image_dir", f"{det_data}/images"), ("image_root", f"{det_data}/images"),
                           ("anno_path", f"{det_data}/{split.lower().replace('eval', 'val')}.json")):
            if key in ds:
                overrides += ["-o", f"DataLoader.{split}.dataset.{key}={value}"]
    sh("tools/train.py", "-c", DET_CONFIG, "-o", f"Global.output_dir={runs}/det/", *quick, *overrides)
    sh("tools/export_model.py", "-c", DET_CONFIG, "-o", f"Global.pretrained_model={best_model(runs + '/det')}", *overrides,
       "--out", os.path.join(models, "det"), "--overwrite")


def best_model(output_dir):
    """best_model under output_dir (detection) or output_dir/<Arch.name> (recognition, PaddleClas's layout)."""
    import glob

    found = sorted(glob.glob(os.path.join(ROOT, output_dir, "best_model.pdparams"))
                   + glob.glob(os.path.join(ROOT, output_dir, "*", "best_model.pdparams")))
    if not found:
        raise SystemExit(f"no best_model.pdparams under {output_dir}: did training run?")
    return found[0][:-len(".pdparams")]


def write_gallery_list(rec_root, classes, path):
    """The recognition set's gallery views of `classes` (test classes: never seen in training),
    as a PP-ShiTu gallery list `relpath<TAB>label name`."""
    from dataset.synthetic import class_name

    from ppshitu.errors import PPShiTuError
    from ppshitu.utils.files import MAX_LIST_BYTES, read_input_text

    names = {class_name(c) for c in classes}
    source = os.path.join(rec_root, "gallery_list.txt")
    lines = []  # each line as the demo writes it: relpath<TAB>label name; anything else is not the demo's file
    text = read_input_text(source, "gallery list", MAX_LIST_BYTES, PPShiTuError)
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise PPShiTuError(f"{source}:{no}: expected 'relpath<TAB>label name' (the list the demo writes), got "
                               f"{line[:80]!r}: --data holds files the demo did not make; give a new or empty folder")
        if parts[1] in names:
            lines.append(line + "\n")
    if not lines:
        raise PPShiTuError(f"{source}: lists none of the demo's classes ({sorted(names)[0]}, ...): --data holds files "
                           f"the demo did not make; give a new or empty folder")
    from ppshitu.utils.outputs import OutputGuard

    with OutputGuard(os.path.dirname(os.path.abspath(path)), "--out") as guard:  # never over a user's file
        guard.write_text(path, "".join(lines))
    return path


def run(args):
    from ppshitu.evaluation.system_metrics import evaluate, load_coco_scenes
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.system import RecognitionSystem

    t0 = time.time()
    data, models, out = args.data, args.models, args.out
    rec_root, scenes_json = make_data(data)
    if args.retrain or not all(os.path.isdir(os.path.join(models, m)) for m in ("rec", "det")):
        train_models(data, models, smoke=args.smoke, detector=args.with_detector)
    if args.retrain_only:
        return 0
    os.makedirs(out, exist_ok=True)
    index_dir = os.path.join(out, "index")
    overrides = [f"Global.rec_inference_model_dir={models}/rec", f"Global.det_inference_model_dir={models}/det",
                 f"Global.output_dir={out}", f"IndexProcess.index_dir={index_dir}",
                 f"IndexProcess.image_root={rec_root}/", f"IndexProcess.use_det={args.gallery_det}",
                 f"IndexProcess.score_thres={args.score_thres}", f"Global.threshold={args.det_threshold}"]
    cfg = load_config(os.path.join(ROOT, "configs/inference/inference_general.yaml"), overrides, INFER_SCHEMA)
    cfg.IndexProcess.embedding_size = load_config(os.path.join(models, "rec", "inference.yml"))["embedding_size"]

    from dataset.synthetic import class_name

    scenes = load_coco_scenes(scenes_json)
    appended = {class_name(c) for c in APPENDED}
    figures = []
    for phase, op, classes in (("gallery: 10 classes", "new", FIRST),
                               ("after append: +7 classes", "append", APPENDED)):
        cfg.IndexProcess.index_operation = op
        cfg.IndexProcess.data_file = write_gallery_list(rec_root, classes, os.path.join(out, f"gallery_{op}.txt"))
        summary = build_gallery(cfg)
        print(f"\n[{phase}] {op}: {summary}")
        system = RecognitionSystem.from_config(cfg)
        preds = [results for _, results in system.predict_paths([p for p, _, _ in scenes], num_workers=2)]
        overall = evaluate(preds, scenes, system.gallery.labels(), higher_is_better=system.gallery.higher_is_better)
        # recall on the appended classes alone: 0 before they are added, by construction
        only_appended = [(p, [b for b, n in zip(bs, ns) if n in appended], [n for n in ns if n in appended])
                         for p, bs, ns in scenes]
        app = evaluate(preds, only_appended, appended, higher_is_better=system.gallery.higher_is_better)
        figures.append((phase, len(system.gallery.labels()), overall, app["recall"]))
        print(error_shares(scenes, preds, set(system.gallery.labels())))
        show_scenes(system, scenes, preds, os.path.join(out, "drawn_" + op), cfg.Global.font_path, args.show)

    print_table(figures)
    print(f"\ndrawn images: {out}/drawn_new/ and {out}/drawn_append/ — demo took {time.time() - t0:.0f} s")
    return 0


def error_shares(scenes, preds, gallery_labels, iou_thr=0.5):
    """Which model each missed gallery-class object is lost to: the detector (no box at IoU >= 0.5, the whole
    image included), or recognition (boxed, but named wrong or rejected as unknown)."""
    from ppshitu.utils.boxes import box_iou

    counts = {"named right": 0, "detector: no box": 0, "recognition: wrong label": 0, "recognition: unknown": 0}
    for (_, boxes, names), results in zip(scenes, preds):
        for box, name in zip(boxes, names):
            if name not in gallery_labels:
                continue
            hits = [r for r in results if box_iou(r["bbox"], box) >= iou_thr]
            if not hits:
                counts["detector: no box"] += 1
            elif any(r["rec_docs"] == name for r in hits):
                counts["named right"] += 1
            elif all(r["rec_docs"] == "unknown" for r in hits):
                counts["recognition: unknown"] += 1
            else:
                counts["recognition: wrong label"] += 1
    total = sum(counts.values())
    missed = total - counts["named right"]
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    share = (f"; of the {missed} missed, the detector {counts['detector: no box'] / missed:.0%}, recognition "
             f"{1 - counts['detector: no box'] / missed:.0%}") if missed else ""
    return f"  gallery-class objects ({total}): {parts}{share}"


def show_scenes(system, scenes, preds, draw_dir, font_path, limit):
    from ppshitu.utils.image import read_image
    from ppshitu.utils.outputs import OutputGuard
    from ppshitu.visualize import draw_results, save_image

    # the drawings go through the guard of the whole output folder: never over a file ppshitu did not write
    with OutputGuard(os.path.dirname(os.path.abspath(draw_dir)), "--out") as guard:
        for (path, _, names), results in list(zip(scenes, preds))[:limit]:
            save_image(os.path.join(draw_dir, os.path.basename(path)),
                       draw_results(read_image(path), results, font_path=font_path), guard=guard)
            said = ", ".join(f"{r['rec_docs']} ({r['rec_scores']:.2f})" for r in results) or "-"
            print(f"  {os.path.basename(path)}: truth [{', '.join(sorted(names))}] -> {said}")


# Figures from an earlier version's run of this demo (MobileNetV1_x0_25 trained from scratch; bench/results/demo.txt
# at the time), never from this run: printed as a labelled line under the table, not as one of its rows.
EARLIER_FROM_SCRATCH = {"f1": 0.117, "appended": 0.115}


def print_table(figures):
    """This run's phases only; the earlier models' figures follow on their own, labelled line."""
    keys = ("precision", "recall", "f1", "unknown_rejection")
    print("\n{:<26} {:>7} ".format("phase (this run)", "classes") + " ".join(f"{k:>17}" for k in keys)
          + " {:>22}".format("recall(appended cls)"))
    for phase, n, m, app_recall in figures:
        print("{:<26} {:>7} ".format(phase, n) + " ".join(f"{m.get(k, float('nan')):>17.3f}" for k in keys)
              + f" {app_recall:>22.3f}")
    print(f"for reference, measured earlier (not this run): the previous from-scratch models gave F1 "
          f"{EARLIER_FROM_SCRATCH['f1']:.3f} after the append, appended-class recall "
          f"{EARLIER_FROM_SCRATCH['appended']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "demo"))
    parser.add_argument("--models", default=os.path.join(ROOT, "models", "demo"))
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_output"))
    parser.add_argument("--retrain", action="store_true", help="train and export the demo models first")
    parser.add_argument("--smoke", action="store_true", help="with --retrain: tiny training runs (tests)")
    parser.add_argument("--retrain-only", action="store_true", help="only (re)make models/demo (make demo-models)")
    parser.add_argument("--with-detector", action="store_true", help="with --retrain: retrain the detector too")
    # measured on the demo's scenes with the committed models (bench/results/demo.txt): 0.75 / 0.4
    parser.add_argument("--score-thres", type=float, default=0.75, help="IndexProcess.score_thres (cosine)")
    parser.add_argument("--det-threshold", type=float, default=0.4, help="Global.threshold (detector score)")
    parser.add_argument("--gallery-det", action="store_true",
                        help="index the detector's main object of each gallery image instead of the whole image")
    parser.add_argument("--show", type=int, default=6, help="scenes to print and draw per phase")
    args = parser.parse_args()
    args.retrain = args.retrain or args.retrain_only
    return run(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
