"""image -> detector -> crops -> embeddings -> gallery -> labels, on generated scenes, with the
committed demo models (models/demo, made by `make demo-models`): the whole query path for real."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ppshitu.config import load_config
from dataset.synthetic import class_name, make_recognition_set, make_scenes
from ppshitu.evaluation.system_metrics import box_iou, load_coco_scenes
from ppshitu.gallery.builder import build_gallery
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.system import UNKNOWN, RecognitionSystem
from ppshitu.utils.image import read_image

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "demo"
FIRST, APPENDED = [40, 41, 42, 43, 44], [45, 46, 47]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_recognition_set(root / "rec", num_classes=50, views_per_class=4, image_size=96, num_train_classes=40,
                         gallery_views=3, seed=0)
    make_scenes(root / "scenes", num_images=30, image_size=(240, 320), objects_per_image=(1, 3),
                object_classes=FIRST + APPENDED, seed=3, split="val")
    cfg = load_config(ROOT / "configs/inference/inference_general.yaml", [
        f"Global.rec_inference_model_dir={MODELS / 'rec'}", f"Global.det_inference_model_dir={MODELS / 'det'}",
        f"Global.output_dir={root / 'out'}", f"IndexProcess.index_dir={root / 'index'}",
        f"IndexProcess.image_root={root / 'rec'}", "IndexProcess.use_det=False", "IndexProcess.index_method=Flat",
        "Global.cpu_num_threads=2"], INFER_SCHEMA)
    return root, cfg


def _gallery_list(root, classes, name):
    names = {class_name(c) for c in classes}
    lines = [l for l in (root / "rec" / "gallery_list.txt").read_text().splitlines() if l.split("\t")[1] in names]
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _correct(system, scenes, wanted):
    """Objects of the `wanted` classes that got a box (IoU >= 0.5) with their own label; boxes found."""
    correct = found = total = 0
    for path, boxes, names in scenes:
        results = system.predict(read_image(path))
        for box, name in zip(boxes, names):
            if name not in wanted:
                continue
            total += 1
            hits = [r for r in results if box_iou(r["bbox"], box) >= 0.5]
            found += bool(hits)
            correct += any(r["rec_docs"] == name for r in hits)
    return correct, found, total


def test_detector_crops_embeddings_gallery_labels_and_append(world):
    root, cfg = world
    scenes = load_coco_scenes(root / "scenes" / "val.json")
    first = {class_name(c) for c in FIRST}
    appended = {class_name(c) for c in APPENDED}

    cfg.IndexProcess.index_operation, cfg.IndexProcess.data_file = "new", _gallery_list(root, FIRST, "g1.txt")
    build_gallery(cfg)
    system = RecognitionSystem.from_config(cfg)
    assert set(system.gallery.labels()) == first
    ok_first, found, total = _correct(system, scenes, first | appended)
    assert total >= 40
    assert found >= 0.6 * total, f"the detector found only {found} of {total} objects"
    ok_appended_before, _, n_appended = _correct(system, scenes, appended)
    assert ok_appended_before == 0  # not in the gallery yet: they cannot be named
    # measured with the fine-tuned EfficientNet-Lite0 models: 29 of 58 (the detector boxed 54; the
    # from-scratch detector 42); the from-scratch models they replaced: 7. Another CPU's rounding flips only
    # near-tied labels and boxes near the thresholds: the floors leave 20 % of the measured count for that,
    # and still fail on a real regression (those old models, a broken gallery, preprocessing or threshold)
    assert ok_first >= 0.8 * 29, f"only {ok_first} of {total} objects named right with the committed demo models"

    cfg.IndexProcess.index_operation, cfg.IndexProcess.data_file = "append", _gallery_list(root, APPENDED, "g2.txt")
    summary = build_gallery(cfg)
    assert summary["added"] == 3 * len(APPENDED)
    system = RecognitionSystem.from_config(cfg)
    assert set(system.gallery.labels()) == first | appended
    ok_appended_after, _, _ = _correct(system, scenes, appended)
    assert n_appended > 0 and ok_appended_after >= 0.8 * 20, (  # measured: 20 of 21 (old models: 5), 0 before
        "appended classes are not recognised without retraining")


def test_predict_system_tool_on_scenes_writes_results_and_drawings(world):
    root, cfg = world
    cfg.IndexProcess.index_operation, cfg.IndexProcess.data_file = "new", _gallery_list(root, FIRST, "g1.txt")
    build_gallery(cfg)
    out = root / "tool_out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/predict_system.py"), "-c", str(ROOT / "configs/inference/inference_general.yaml"),
         "-o", f"Global.infer_imgs={root / 'scenes' / 'images'}", "-o", f"Global.output_dir={out}",
         "-o", f"Global.rec_inference_model_dir={MODELS / 'rec'}", "-o", f"Global.det_inference_model_dir={MODELS / 'det'}",
         "-o", f"IndexProcess.index_dir={root / 'index'}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 30 and len(list(out.glob("*.jpg"))) == 30
    import json
    results = [json.loads(l) for l in lines]
    labels = {r["rec_docs"] for res in results for r in res["results"]}
    assert labels & {class_name(c) for c in FIRST}, labels
    assert labels <= {class_name(c) for c in FIRST} | {UNKNOWN}
