"""Recognition-system metrics against labelled scenes (COCO json with `object_name`).

Definitions (IoU threshold 0.5 by default):
- a *positive* prediction is one whose label is not "unknown";
- *known* objects are ground-truth objects whose label is in the gallery, *unknown* objects the rest;
- positives are matched greedily, best score first, each to the unmatched known object with the
  same label and the highest IoU >= threshold: a match is a true positive, anything else (wrong
  label, duplicate, background, an unknown object) a false positive; unmatched known objects are
  false negatives. precision = tp / (tp + fp), recall = tp / known_objects, F1 their harmonic mean;
- unknown rejection = the fraction of unknown objects that a prediction labelled "unknown" overlaps
  at IoU >= threshold, or that no prediction with a gallery label overlaps at IoU >= threshold.
A ratio with a zero denominator is NaN.
"""
import logging
import math
import os

from ..errors import PPShiTuError
from ..utils.boxes import box_iou

UNKNOWN = "unknown"
log = logging.getLogger(__name__)


class ScenesError(PPShiTuError, ValueError):
    """A scenes json is missing or malformed."""


def _prediction(p, where):
    """(bbox, label, score) from {"bbox", "label", "score"} or the system's {"bbox", "rec_docs", "rec_scores"}."""
    try:
        bbox = [float(v) for v in p["bbox"]]
        label = p["label"] if "label" in p else p["rec_docs"]
        score = p.get("score", p.get("rec_scores", 0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise PPShiTuError(f"{where}: a prediction needs 'bbox' [x1,y1,x2,y2] and 'label' (or 'rec_docs'); "
                           f"got {p!r} ({e})") from None
    if len(bbox) != 4:
        raise PPShiTuError(f"{where}: bbox must be [x1, y1, x2, y2], got {p['bbox']!r}")
    return bbox, (UNKNOWN if label is None else str(label)), float(0.0 if score is None else score)


def match_scene(predictions, gt_boxes, gt_labels, iou_thr=0.5, gallery_labels=None, higher_is_better=True):
    """Match one image's predictions to its ground truth (see the module docstring).

    `gallery_labels`: labels the system can name (None: every ground-truth label is known).
    `higher_is_better`: False when scores are distances (L2 galleries), so the greedy order flips.
    Returns counts (tp, fp, fn, known_objects, unknown_objects, unknown_rejected) and
    `matches`: [(prediction index, ground-truth index)] of the true positives."""
    if len(gt_boxes) != len(gt_labels):
        raise PPShiTuError(f"{len(gt_boxes)} ground-truth boxes but {len(gt_labels)} labels")
    preds = [_prediction(p, f"prediction {i}") for i, p in enumerate(predictions)]
    gt_boxes = [[float(v) for v in b] for b in gt_boxes]
    gt_labels = [str(g) for g in gt_labels]
    known = [gallery_labels is None or g in gallery_labels for g in gt_labels]
    positive = [i for i, (_, label, _) in enumerate(preds) if label != UNKNOWN]
    positive.sort(key=lambda i: -preds[i][2] if higher_is_better else preds[i][2])  # stable: ties keep order

    matched, matches = set(), []
    for i in positive:
        box, label, _ = preds[i]
        best, best_iou = None, -1.0
        for j, (gbox, glabel) in enumerate(zip(gt_boxes, gt_labels)):
            if j in matched or not known[j] or glabel != label:
                continue
            o = box_iou(box, gbox)
            if o >= iou_thr and o > best_iou:
                best, best_iou = j, o
        if best is not None:
            matched.add(best)
            matches.append((i, best))

    def named(label):
        return label != UNKNOWN and (gallery_labels is None or label in gallery_labels)

    rejected = 0
    for j, gbox in enumerate(gt_boxes):
        if known[j]:
            continue
        near = [label for box, label, _ in preds if box_iou(box, gbox) >= iou_thr]
        if UNKNOWN in near or not any(named(label) for label in near):
            rejected += 1
    tp = len(matches)
    n_known = sum(known)
    return {"tp": tp, "fp": len(positive) - tp, "fn": n_known - tp, "known_objects": n_known,
            "unknown_objects": len(gt_boxes) - n_known, "unknown_rejected": rejected, "matches": matches}


def _ratio(num, den):
    return num / den if den else math.nan


def summarize(counts):
    """precision, recall, f1, unknown_rejection (+ the counts) from summed match_scene counts."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, counts["known_objects"])
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = {"precision": precision, "recall": recall, "f1": f1,
           "unknown_rejection": _ratio(counts["unknown_rejected"], counts["unknown_objects"])}
    out.update({k: counts[k] for k in ("tp", "fp", "fn", "known_objects", "unknown_objects",
                                       "unknown_rejected", "images")})
    return out


def evaluate(all_predictions, ground_truth, gallery_labels, iou_thr=0.5, higher_is_better=True):
    """Metrics over many images.

    `all_predictions`: one list of predictions per image; `ground_truth`: one (boxes, labels) or
    (image_path, boxes, labels) per image, in the same order; `gallery_labels`: the gallery's labels."""
    all_predictions, ground_truth = list(all_predictions), list(ground_truth)
    if len(all_predictions) != len(ground_truth):
        raise PPShiTuError(f"{len(all_predictions)} prediction lists but {len(ground_truth)} ground-truth images")
    gallery_labels = {str(g) for g in gallery_labels}
    totals = dict.fromkeys(("tp", "fp", "fn", "known_objects", "unknown_objects", "unknown_rejected"), 0)
    for preds, gt in zip(all_predictions, ground_truth):
        boxes, labels = gt[-2], gt[-1]
        counts = match_scene(preds, boxes, labels, iou_thr, gallery_labels, higher_is_better)
        for k in totals:
            totals[k] += counts[k]
    totals["images"] = len(ground_truth)
    return summarize(totals)


MAX_COORD = 100_000  # px: a box coordinate beyond this is no box of any image ppshitu reads


def _scene_box(bbox, image, json_path, where):
    """[x1, y1, x2, y2] of a scene annotation's COCO bbox, or (None, why) for a malformed box that is skipped
    (det/coco.py's rule: a bbox that is not four numbers is refused; an empty, non-finite, absurd or
    outside-its-image one is skipped with a warning and counted)."""
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise ScenesError(f"scenes json {json_path}: {where}: bbox must be [x, y, width, height] numbers, "
                          f"got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, "not finite"
    if w <= 0 or h <= 0:
        return None, "empty (width and height must be > 0)"
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > MAX_COORD:
        return None, f"beyond {MAX_COORD} px"
    x1, y1, x2, y2 = x, y, x + w, y + h
    width, height = image.get("width"), image.get("height")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if x2 - x1 < 1 or y2 - y1 < 1:
            return None, f"outside its {width}x{height} image"
    return [x1, y1, x2, y2], None


def load_coco_scenes(json_path, image_root=None, counts=None):
    """[(image_path, boxes [[x1, y1, x2, y2]], label names)] from a scenes COCO json.

    Labels come from each annotation's `object_name` (else `object_label`); images are looked
    up under `image_root` (default: the json's folder + "images/"). Images without objects are kept.
    Annotations follow det/coco.py's rule: a missing key, a bbox that is not four numbers or an image_id
    that is not in `images` is a ScenesError naming the file and the annotation; a box that is empty
    (x2 <= x1, y2 <= y1), not finite, beyond MAX_COORD or outside its image (when the image states its
    width and height; boxes are clipped to it) is skipped with a warning naming the file, the image and
    the annotation, and counted in `counts["skipped_boxes"]` (eval_system reports it)."""
    from ..utils.files import MAX_ANNOTATION_BYTES, read_input_json

    # regular files only (a FIFO would block the read), at most MAX_ANNOTATION_BYTES (utils/files.py)
    coco = read_input_json(json_path, "scenes json", MAX_ANNOTATION_BYTES, ScenesError,
                           missing=f"scenes json {json_path}: no such file",
                           invalid="scenes json {path}: cannot read it as JSON ({e})")
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ScenesError(f"scenes json {json_path}: expected a COCO object with an 'images' list")
    annotations = coco.get("annotations", [])
    if not isinstance(annotations, list):
        raise ScenesError(f"scenes json {json_path}: 'annotations' must be a list")
    root = image_root if image_root is not None else os.path.join(os.path.dirname(os.path.abspath(json_path)),
                                                                  "images")
    images, names = {}, {}
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ScenesError(f"scenes json {json_path}: image entry {im!r} needs 'id' and 'file_name'")
        key = im["id"]
        if key in images:  # one image scored twice would count its hits and misses twice
            raise ScenesError(f"scenes json {json_path}: images[{i}]: image id {im['id']!r} is listed twice (also "
                              f"{images[key]['file_name']!r}); each image once")
        name = os.path.normpath(str(im["file_name"]))
        if name in names:
            raise ScenesError(f"scenes json {json_path}: images[{i}]: file_name {im['file_name']!r} is listed twice "
                              f"(ids {names[name]!r} and {im['id']!r}); each image once")
        images[key], names[name] = im, im["id"]
    by_image, skipped = {}, 0
    for i, a in enumerate(annotations):
        name = a.get("object_name", a.get("object_label")) if isinstance(a, dict) else None
        if name is None or "bbox" not in a or "image_id" not in a:
            raise ScenesError(f"scenes json {json_path}: annotation {a.get('id', '?') if isinstance(a, dict) else a!r} "
                              f"(annotations[{i}]) needs image_id, bbox and object_name (or object_label)")
        where = f"annotations[{i}] (id {a.get('id', '?')})"
        image = images.get(a["image_id"])
        if image is None:
            raise ScenesError(f"scenes json {json_path}: {where}: image_id {a['image_id']!r} is not in images")
        box, why = _scene_box(a["bbox"], image, json_path, where)
        if box is None:
            log.warning("%s: image %s: %s: skipping box %s: %s", json_path, image["file_name"], where, a["bbox"], why)
            skipped += 1
            continue
        by_image.setdefault(a["image_id"], []).append((box, str(name)))
    if skipped:
        log.warning("%s: skipped %d malformed ground-truth boxes", json_path, skipped)
    if counts is not None:
        counts["skipped_boxes"] = skipped
    scenes = []
    for im in coco["images"]:
        objs = by_image.get(im["id"], [])
        scenes.append((os.path.join(root, im["file_name"]), [b for b, _ in objs], [n for _, n in objs]))
    return scenes


def evaluate_system(system, scenes_json, limit=None, progress=True, iou_thr=0.5, image_root=None):
    """Run `system.predict` on the scenes (the first `limit`) and score it with `evaluate`.

    Unreadable images (also: past the pixel limit, too small) are skipped with one warning each;
    their number is `skipped_images`; malformed ground-truth boxes (load_coco_scenes) `skipped_boxes`. Raises ScenesError when no image is left to score (the
    metrics would all be NaN)."""
    from tqdm import tqdm

    from ..utils.image import ImageReadError, read_image

    counts = {}
    scenes = load_coco_scenes(scenes_json, image_root, counts)
    if limit is not None:
        scenes = scenes[:int(limit)]
    if not scenes:
        raise ScenesError(f"scenes json {scenes_json}: lists no images to evaluate")
    preds, kept, first_error = [], [], None
    for path, boxes, labels in tqdm(scenes, desc="eval scenes", unit="img", disable=not progress):
        try:
            preds.append(system.predict(read_image(path, getattr(system, "max_image_pixels", None))))
        except ImageReadError as e:
            log.warning("skipping %s", e)
            first_error = first_error or e
            continue
        kept.append((path, boxes, labels))
    if not kept:
        root = image_root if image_root is not None else os.path.join(
            os.path.dirname(os.path.abspath(scenes_json)), "images")
        raise ScenesError(f"scenes json {scenes_json}: none of its {len(scenes)} images could be read from {root} "
                          f"(first: {first_error}); nothing was evaluated (check --image-root)")
    metrics = evaluate(preds, kept, system.gallery.labels(), iou_thr,
                       getattr(system.gallery, "higher_is_better", True))
    metrics["skipped_images"] = len(scenes) - len(kept)
    metrics["skipped_boxes"] = counts["skipped_boxes"]  # malformed ground-truth boxes left out (a warning each)
    return metrics
