"""COCO AP against hand-made detections, and the CUB bounding_boxes.txt converter."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.synthetic import make_mini_cub
from ppshitu.det.coco import load_coco
from ppshitu.det.metrics import coco_ap, to_coco_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    path = tmp_path_factory.mktemp("ap") / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40]},
                        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [50, 50, 30, 20]}],
        "categories": [{"id": 5, "name": "bird"}]}))
    return load_coco(str(path))


def _rows(*boxes):
    """[class, score, x1, y1, x2, y2] rows and the per-image counts."""
    return np.array([[0, s, *b] for s, b in boxes], np.float32)


def test_perfect_detections_score_one(two_images):
    bbox = _rows((0.9, (10, 10, 50, 50)), (0.8, (50, 50, 80, 70)))
    ap = coco_ap(two_images, to_coco_results(bbox, [1, 1], [1, 2]))
    assert ap["AP50"] == pytest.approx(1.0) and ap["mAP"] == pytest.approx(1.0)


def test_loose_and_false_detections_lower_ap(two_images):
    # image 1: a box with IoU 0.67 (counts at .5, not at .75); image 2: a confident false positive first
    bbox = _rows((0.9, (10, 10, 50, 70)), (0.95, (0, 0, 20, 20)), (0.5, (50, 50, 80, 70)))
    ap = coco_ap(two_images, to_coco_results(bbox, [1, 2], [1, 2]))
    assert 0.5 < ap["AP50"] < 1.0
    assert ap["mAP"] < ap["AP50"] and ap["AP75"] < ap["AP50"]


def test_no_detections_is_zero(two_images):
    assert coco_ap(two_images, []) == {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}


@pytest.fixture(scope="module")
def mini_cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    make_mini_cub(root, images_per_class=2, image_size=64)
    return root / "CUB_200_2011"


def test_cub_boxes_convert_to_coco(mini_cub, tmp_path):
    out = tmp_path / "cub_train.json"
    proc = subprocess.run([sys.executable, str(ROOT / "dataset/cub_to_coco.py"), str(mini_cub), "--out", str(out),
                           "--split", "train"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    coco = json.loads(out.read_text())
    split = dict(line.split() for line in (mini_cub / "train_test_split.txt").read_text().splitlines())
    assert sorted(im["id"] for im in coco["images"]) == sorted(int(i) for i, t in split.items() if t == "1")
    assert coco["categories"] == [{"id": 1, "name": "foreground"}]
    boxes = {int(r[0]): list(map(float, r[1:])) for r in
             (line.split() for line in (mini_cub / "bounding_boxes.txt").read_text().splitlines())}
    for ann in coco["annotations"]:
        assert ann["bbox"] == pytest.approx(boxes[ann["image_id"]])  # the source boxes lie inside their images
    # the json's file names resolve under CUB_200_2011/images, and the detector's loader reads it
    loaded = load_coco(str(out), image_root=str(mini_cub / "images"))
    assert len(loaded.records) == len(coco["images"]) and all(Path(r.path).is_file() for r in loaded.records)
    assert all(len(r.boxes) == 1 for r in loaded.records)


def test_cub_converter_names_missing_files(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "dataset/cub_to_coco.py"), str(tmp_path), "--out",
                           str(tmp_path / "x.json")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{tmp_path / 'images.txt'}: not found" in proc.stderr
