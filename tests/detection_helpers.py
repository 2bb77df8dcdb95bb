"""Detections of two runs (runtimes, precisions, CPUs) compared as a user sees them."""
from ppshitu.utils.boxes import match_detections


# Two fp32 runtimes (oneDNN vs OpenVINO's CPU plugin) sum in different orders, and the kernels differ by CPU
# (AVX2, AVX-512, AMX): boxes are compared as a user sees them, paired by IoU >= 0.95 with scores within 2e-3;
# a box within 0.02 of the score threshold, or whose overlap with a stronger box is within 0.02 of NMS's 0.6,
# may be kept by one run and dropped by the other and is not counted either way.
def assert_same_detections(ref, got, score_thr, nms_iou=0.6):
    out = match_detections(ref, got, score_thr, margin=0.02, min_iou=0.95, nms_iou=nms_iou)
    assert not out["missing"] and not out["extra"], (out, ref, got)
    assert all(d < 2e-3 for *_, d in out["pairs"]), out["pairs"]
    assert len(out["pairs"]) >= 0.8 * len(ref), out  # the rounding-sensitive few cannot be most of them
