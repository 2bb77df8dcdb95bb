"""Box geometry shared by the recognition system, its evaluation and the comparisons of runtimes."""
import numpy as np


def box_iou(a, b):
    """IoU of two [x1, y1, x2, y2] boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(ref, got, score_thr, margin=0.02, min_iou=0.8, nms_iou=None):
    """Compare two runs of a detector (two runtimes, precisions or CPUs) by what a user sees.

    ref, got: [N, >=5] rows of [x1, y1, x2, y2, score]. Each box of `ref` is paired greedily (by score) with
    the unpaired box of `got` it overlaps most, if their IoU >= min_iou. A box left unpaired counts as a
    difference only when it is clear of the decisions that rounding may flip: its score is at least
    score_thr + margin, and (with `nms_iou`, the NMS overlap threshold) its overlap with every stronger box of
    its own run is more than `margin` away from nms_iou. Returns {"pairs": [(i, j, iou, |score_i - score_j|)],
    "missing": ref indices, "extra": got indices, "ambiguous": unpaired indices on either side not counted}.
    """
    ref, got = np.asarray(ref, np.float64).reshape(-1, 5), np.asarray(got, np.float64).reshape(-1, 5)
    free = set(range(len(got)))
    pairs = []
    for i in np.argsort(-ref[:, 4], kind="stable"):
        best, best_iou = None, min_iou
        for j in free:
            iou = box_iou(ref[i, :4], got[j, :4])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            free.discard(best)
            pairs.append((int(i), int(best), float(best_iou), float(abs(ref[i, 4] - got[best, 4]))))

    def clear(rows, k):
        if rows[k, 4] < score_thr + margin:
            return False
        if nms_iou is None:
            return True
        stronger = rows[rows[:, 4] > rows[k, 4]]
        return all(abs(box_iou(rows[k, :4], s[:4]) - nms_iou) > margin for s in stronger)

    paired_ref = {p[0] for p in pairs}
    unpaired = [("ref", i) for i in range(len(ref)) if i not in paired_ref] + [("got", j) for j in sorted(free)]
    out = {"pairs": pairs, "missing": [], "extra": [], "ambiguous": []}
    for side, k in unpaired:
        if clear(ref if side == "ref" else got, k):
            out["missing" if side == "ref" else "extra"].append(k)
        else:
            out["ambiguous"].append((side, k))
    return out
