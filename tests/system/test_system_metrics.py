import json
import math

import numpy as np
import pytest

from ppshitu.errors import PPShiTuError
from ppshitu.evaluation.system_metrics import (ScenesError, box_iou, evaluate, evaluate_system,
                                               load_coco_scenes, match_scene)

A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 70, 20]
GALLERY = {"cat", "dog"}


def pred(box, label, score=0.9):
    return {"bbox": box, "rec_docs": label, "rec_scores": score}


def test_iou():
    assert box_iou(A, A) == 1.0 and box_iou(A, B) == 0.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)


def test_perfect_scene():
    m = evaluate([[pred(A, "cat"), pred(B, "dog")]], [([A, B], ["cat", "dog"])], GALLERY)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 0)
    assert m["precision"] == m["recall"] == m["f1"] == 1.0
    assert math.isnan(m["unknown_rejection"]) and m["unknown_objects"] == 0


def test_wrong_label_at_right_box_is_fp_and_fn():
    # A: right; B: "cat" on a dog -> fp + fn.  P = 1/2, R = 1/2, F1 = 1/2
    m = evaluate([[pred(A, "cat"), pred(B, "cat")]], [([A, B], ["cat", "dog"])], GALLERY)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)


def test_duplicates_give_one_tp_one_fp():
    # two "cat" boxes on one cat, dog missed: tp 1, fp 1, fn 1 -> P 1/2, R 1/2
    shifted = [1, 0, 11, 10]  # IoU with A = 90/110
    m = match_scene([pred(A, "cat", 0.6), pred(shifted, "cat", 0.8)], [A, B], ["cat", "dog"],
                    gallery_labels=GALLERY)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["matches"] == [(1, 0)]  # the higher score wins the object


def test_lower_is_better_scores_flip_greedy_order():
    m = match_scene([pred(A, "cat", 0.6), pred([1, 0, 11, 10], "cat", 0.8)], [A], ["cat"],
                    higher_is_better=False)
    assert m["matches"] == [(0, 0)]


def test_low_iou_and_unknown_predictions():
    # box far off (IoU 0) with the right label -> fp + fn; an "unknown" on the dog is not a positive -> fn
    half = [5, 0, 15, 10]  # IoU 1/3 with A
    m = evaluate([[pred(half, "cat"), pred(B, "unknown")]], [([A, B], ["cat", "dog"])], GALLERY)
    assert (m["tp"], m["fp"], m["fn"]) == (0, 1, 2)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_unknown_rejection_by_hand():
    # image 1: cat (known) found; "bird" (not in gallery) labelled "dog" -> not rejected, and an fp
    # image 2: "fish" called unknown -> rejected; "frog" with no prediction -> rejected
    # image 3: "bird" overlapped by both "unknown" and "cat" -> rejected (matched by unknown), "cat" is an fp
    preds = [[pred(A, "cat"), pred(B, "dog")],
             [pred(A, "unknown", 0.2)],
             [pred(C, "unknown", 0.3), pred(C, "cat", 0.5)]]
    gt = [("i1.jpg", [A, B], ["cat", "bird"]),
          ("i2.jpg", [A, B], ["fish", "frog"]),
          ("i3.jpg", [C], ["bird"])]
    m = evaluate(preds, gt, GALLERY)
    assert m["unknown_objects"] == 4 and m["unknown_rejected"] == 3
    assert m["unknown_rejection"] == pytest.approx(3 / 4)
    assert (m["tp"], m["fp"], m["fn"], m["known_objects"]) == (1, 2, 0, 1)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    assert m["images"] == 3


def test_length_mismatch_is_an_error():
    with pytest.raises(PPShiTuError, match="2 prediction lists but 1"):
        evaluate([[], []], [([A], ["cat"])], GALLERY)
    with pytest.raises(PPShiTuError, match="bbox"):
        match_scene([{"rec_docs": "cat"}], [A], ["cat"])


def _write_scenes(tmp_path, n=3):
    from PIL import Image

    (tmp_path / "images").mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "foreground"}]}
    for i in range(1, n + 1):
        name = f"val_{i:06d}.jpg"
        Image.fromarray(np.full((60, 80, 3), 30 * i, np.uint8)).save(tmp_path / "images" / name)
        coco["images"].append({"id": i, "file_name": name, "width": 80, "height": 60})
        for k, (box, label) in enumerate([([2, 2, 20, 20], "cat"), ([40, 10, 30, 30], "bird" if i == 1 else "dog")]):
            x, y, w, h = box
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i, "category_id": 1,
                                        "bbox": [x, y, w, h], "object_label": k, "object_name": label})
    path = tmp_path / "val.json"
    path.write_text(json.dumps(coco))
    return str(path)


def test_load_coco_scenes(tmp_path):
    scenes = load_coco_scenes(_write_scenes(tmp_path))
    assert len(scenes) == 3
    path, boxes, labels = scenes[0]
    assert path == str(tmp_path / "images" / "val_000001.jpg")
    assert boxes == [[2, 2, 22, 22], [40, 10, 70, 40]] and labels == ["cat", "bird"]
    with pytest.raises(ScenesError, match="nope.json"):
        load_coco_scenes(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}],
                               "annotations": [{"id": 7, "image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(ScenesError, match="annotation 7"):
        load_coco_scenes(str(bad))


class _Gallery:
    def __init__(self, labels):
        self._labels = labels

    def labels(self):
        return sorted(self._labels)


class _Oracle:
    """Stand-in system: returns the ground truth of each image, optionally relabelled."""

    def __init__(self, scenes_json, gallery_labels, relabel=None):
        self.gallery = _Gallery(gallery_labels)
        self.truth = {}
        for path, boxes, labels in load_coco_scenes(scenes_json):
            from ppshitu.utils.image import read_image
            key = int(read_image(path)[0, 0, 0])
            self.truth[key] = (boxes, labels)
        self.relabel = relabel

    def predict(self, rgb):
        boxes, labels = self.truth[int(rgb[0, 0, 0])]
        out = []
        for b, lab in zip(boxes, labels):
            lab = lab if lab in self.gallery.labels() else "unknown"
            if self.relabel and lab != "unknown":
                lab = self.relabel[lab]
            out.append({"bbox": b, "rec_docs": lab, "rec_scores": 0.9})
        return out


def test_evaluate_system_with_stand_in(tmp_path):
    scenes = _write_scenes(tmp_path)
    good = evaluate_system(_Oracle(scenes, {"cat", "dog"}), scenes, progress=False)
    # 3 cats + 2 dogs known, 1 bird unknown: all right
    assert (good["tp"], good["fp"], good["fn"], good["known_objects"], good["unknown_objects"]) == (5, 0, 0, 5, 1)
    assert good["precision"] == good["recall"] == good["unknown_rejection"] == 1.0
    assert good["skipped_images"] == 0

    swapped = evaluate_system(_Oracle(scenes, {"cat", "dog"}, relabel={"cat": "dog", "dog": "cat"}), scenes,
                              limit=2, progress=False)
    # 2 images: 2 cats + 1 dog, all mislabelled -> 3 fp, 3 fn
    assert swapped["images"] == 2
    assert (swapped["tp"], swapped["fp"], swapped["fn"]) == (0, 3, 3)
    assert swapped["precision"] == 0.0 and swapped["recall"] == 0.0


def test_evaluate_system_skips_unreadable(tmp_path):
    scenes = _write_scenes(tmp_path)
    system = _Oracle(scenes, {"cat", "dog"})
    (tmp_path / "images" / "val_000002.jpg").write_bytes(b"not a jpeg")
    m = evaluate_system(system, scenes, progress=False)
    assert m["skipped_images"] == 1 and m["images"] == 2


def test_eval_system_tool_writes_json(tmp_path, monkeypatch, capsys):
    import importlib.util
    import os
    import sys

    import ppshitu.system

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("eval_system_tool", os.path.join(root, "tools", "eval_system.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    scenes = _write_scenes(tmp_path)
    # only "cat" in the gallery: dogs and the bird are unknown, so recall 1, rejection 1
    monkeypatch.setattr(ppshitu.system.RecognitionSystem, "from_config",
                        classmethod(lambda cls, cfg: _Oracle(scenes, {"cat"})))
    out_dir = tmp_path / "out"
    config = os.path.join(root, "configs/inference/inference_general.yaml")
    monkeypatch.setattr(sys, "argv", ["eval_system.py", "-c", config, "-o", f"Global.output_dir={out_dir}", "--scenes", scenes, "--no-progress"])
    assert tool.main() == 0
    saved = json.loads((out_dir / "eval_system.json").read_text())
    assert saved["tp"] == 3 and saved["fp"] == 0 and saved["unknown_objects"] == 3
    assert saved["precision"] == 1.0 and saved["unknown_rejection"] == 1.0 and saved["gallery_labels"] == 1
    assert "unknown_rejection" in capsys.readouterr().out
