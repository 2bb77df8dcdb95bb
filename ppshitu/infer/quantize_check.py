"""Does an int8 model keep fp32's answers? Measured on the calibration data, by what the user sees.

    check = answer_check("det", items, feeds, fp32_compiled, threshold=0.3)
    check.score(int8_compiled)     # {"agreement": 0.995, "per_item": [...], ...}

det: each image's fp32 boxes clear of the score threshold (score >= threshold + MARGIN) must come back from int8
     at IoU >= 0.8 (ppshitu.utils.boxes.match_detections), and int8 must add no clear box fp32 lacks: an image's
     agreement is its kept boxes over its clear boxes (fp32's, plus int8's extras); the set's is their sum's.
rec: each image's int8 vector must keep the top-1 neighbour fp32's vector has among the other calibration images'
     fp32 vectors (a fixed gallery, so an image's verdict is its own: NNCF's accuracy control ranks layers image
     by image) where fp32 is decided (top two >= MARGIN apart), and its cosine to fp32 must be >= REC_MIN_COSINE.
Both are what moves predict_system's answers: a box that moves changes the crop; a vector that moves changes the
gallery match. tools/quantize.py stops keeping layers in f32 once the set's agreement reaches the target.
"""
import numpy as np

from ..utils.boxes import match_detections

MARGIN = 0.02          # as the held-out check: score or cosine gaps below this are coin tosses in fp32 too
REC_MIN_COSINE = 0.98  # below it an embedding has moved as much as a different view of the object moves it
DET_MIN_IOU = 0.8      # a box that moves less keeps its crop (and its embedding) nearly as it was


def run_compiled(compiled, feeds):
    """The model's outputs on one feed dict, in output order."""
    out = compiled(feeds)
    return [np.asarray(out[port]) for port in compiled.outputs]


def _det_rows(outputs):
    """[N, 5] rows x1 y1 x2 y2 score of a PaddleDetection output pair (bbox [M, 6] class score box, bbox_num)."""
    bbox = next(o for o in outputs if o.ndim == 2 and o.shape[-1] == 6)
    return np.concatenate([bbox[:, 2:6], bbox[:, 1:2]], axis=1) if len(bbox) else np.zeros((0, 5))


class DetCheck:
    def __init__(self, reference, threshold):
        self.ref = [_det_rows(o) for o in reference]
        self.threshold = float(threshold)

    def item(self, i, outputs):
        """(kept, counted) boxes of image i."""
        ref, got = self.ref[i], _det_rows(outputs)
        m = match_detections(ref, got, self.threshold, margin=MARGIN, min_iou=DET_MIN_IOU)
        clear = self.threshold + MARGIN
        counted = int((ref[:, 4] >= clear).sum()) + sum(1 for j in m["extra"] if got[j, 4] >= clear)
        kept = sum(1 for i_ref, _, _, _ in m["pairs"] if ref[i_ref, 4] >= clear)
        return kept, counted


class RecCheck:
    def __init__(self, reference):
        self.ref = np.stack([np.asarray(o[0], np.float32).reshape(-1) for o in reference])
        self.ref /= np.linalg.norm(self.ref, axis=1, keepdims=True) + 1e-12
        sims = self.ref @ self.ref.T
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1)
        self.top = order[:, 0]
        if len(self.ref) > 2:
            gap = sims[np.arange(len(sims)), order[:, 0]] - sims[np.arange(len(sims)), order[:, 1]]
        else:
            gap = np.zeros(len(self.ref))
        self.decided = gap >= MARGIN

    def cosine(self, i, outputs):
        v = np.asarray(outputs[0], np.float32).reshape(-1)
        return float(v @ self.ref[i] / (np.linalg.norm(v) + 1e-12))

    def item(self, i, outputs):
        v = np.asarray(outputs[0], np.float32).reshape(-1)
        v = v / (np.linalg.norm(v) + 1e-12)
        ok = float(v @ self.ref[i]) >= REC_MIN_COSINE
        if ok and self.decided[i]:
            sims = self.ref @ v
            sims[i] = -np.inf
            ok = int(np.argmax(sims)) == int(self.top[i])
        return int(ok), 1


class AnswerCheck:
    """Agreement of a compiled model with the fp32 reference over indexed items (i, item); feeds(item) makes the
    model's inputs."""

    def __init__(self, model_type, items, feeds, reference_compiled, threshold=0.3):
        self.model_type, self.items, self.feeds = model_type, list(items), feeds
        reference = [run_compiled(reference_compiled, feeds(item)) for item in self.items]
        self.check = DetCheck(reference, threshold) if model_type == "det" else RecCheck(reference)

    def counts(self, compiled, indexed):
        out = []
        for i, item in indexed:
            outputs = run_compiled(compiled, self.feeds(item))
            out.append(self.check.item(i, outputs) + ((self.check.cosine(i, outputs),) if self.model_type == "rec"
                                                      else ()))
        return out

    def validation_fn(self, compiled, indexed):
        """NNCF's validation function: (agreement, None) over the (index, item) pairs it is given."""
        rows = self.counts(compiled, indexed)
        kept, counted = sum(r[0] for r in rows), sum(r[1] for r in rows)
        return (kept / counted if counted else 1.0), None

    def score(self, compiled):
        rows = self.counts(compiled, list(enumerate(self.items)))
        kept, counted = sum(r[0] for r in rows), sum(r[1] for r in rows)
        out = {"agreement": round(kept / counted, 6) if counted else 1.0, "kept": kept, "counted": counted,
               "images": len(self.items)}
        if self.model_type == "rec":
            cos = np.array([r[2] for r in rows])
            out.update(cosine_mean=round(float(cos.mean()), 6), cosine_min=round(float(cos.min()), 6),
                       decided=int(self.check.decided.sum()))
        return out


def float_layers(model):
    """Friendly names of the convolution / matmul layers of a quantized model that run in float: no
    FakeQuantize feeds their data input (NNCF's ignored scope, or a layer the accuracy control reverted)."""
    from .openvino.passes import HEAVY_OPS

    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in HEAVY_OPS:
            continue
        src = op.input_value(0).get_node()
        while src.get_type_name() in ("Convert", "Reshape", "Transpose") and src.get_input_size():
            src = src.input_value(0).get_node()
        if src.get_type_name() != "FakeQuantize":
            out.append(op.get_friendly_name())
    return out
