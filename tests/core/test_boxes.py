"""match_detections: two detector runs compared by what a user sees, with boxes near a threshold not counted."""
import numpy as np

from ppshitu.utils.boxes import match_detections


def _row(x, y, s, w=20):
    return [x, y, x + w, y + w, s]


def test_pairs_moved_boxes_and_counts_clear_differences():
    ref = np.array([_row(0, 0, 0.9), _row(50, 50, 0.6), _row(100, 0, 0.7)])
    got = np.array([_row(1, 0, 0.89), _row(50, 51, 0.61)])
    out = match_detections(ref, got, score_thr=0.3)
    assert [(i, j) for i, j, _, _ in out["pairs"]] == [(0, 0), (1, 1)]
    assert out["missing"] == [2] and out["extra"] == []
    assert max(d for *_, d in out["pairs"]) < 0.011
    out = match_detections(got, ref, score_thr=0.3)
    assert out["extra"] == [2] and out["missing"] == []


def test_boxes_near_the_score_threshold_are_not_counted():
    ref = np.array([_row(0, 0, 0.9), _row(100, 0, 0.31)])  # 0.31: within the margin of 0.3
    out = match_detections(ref, ref[:1], score_thr=0.3, margin=0.02)
    assert out["missing"] == [] and out["ambiguous"] == [("ref", 1)]


def test_boxes_at_the_nms_overlap_are_not_counted():
    a = _row(0, 0, 0.9, w=100)
    b = [40, 0, 140, 100, 0.8]  # IoU with a = 60 / 140 = 0.43
    ref = np.array([a, b])
    assert match_detections(ref, ref[:1], score_thr=0.1, nms_iou=0.6)["missing"] == [1]
    assert match_detections(ref, ref[:1], score_thr=0.1, nms_iou=0.43)["ambiguous"] == [("ref", 1)]
