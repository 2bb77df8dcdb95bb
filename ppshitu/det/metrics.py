"""COCO box AP (pycocotools) of a detector on a validation set.

The ground truth is built from the loaded CocoSet (cleaned boxes, categories mapped
as in training: class index + 1), not re-read from the raw json, so evaluation scores
exactly what the detector was trained to find.
"""
import contextlib
import io

import numpy as np
import paddle
from tqdm import tqdm


def _coco_gt(coco_set):
    from pycocotools.coco import COCO

    images, anns = [], []
    for rec in coco_set.records:
        images.append({"id": rec.image_id, "width": rec.width, "height": rec.height})
        for box, cls in zip(rec.boxes, rec.classes):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append({"id": len(anns) + 1, "image_id": rec.image_id, "category_id": int(cls) + 1,
                         "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": i + 1, "name": n} for i, n in enumerate(coco_set.label_list)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_ap(coco_set, detections):
    """{'mAP': AP@[.5:.95], 'AP50': AP@.5, 'AP75'} for COCO-style result dicts
    ({image_id, category_id, bbox [x, y, w, h], score}); zeros when nothing was detected."""
    from pycocotools.cocoeval import COCOeval

    if not detections or not any(len(r.boxes) for r in coco_set.records):
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}
    gt = _coco_gt(coco_set)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"mAP": float(max(ev.stats[0], 0.0)), "AP50": float(max(ev.stats[1], 0.0)),
            "AP75": float(max(ev.stats[2], 0.0))}


def to_coco_results(bbox, bbox_num, image_ids):
    """The model's rows [class, score, x1, y1, x2, y2] (+ per-image counts) as COCO results."""
    results, start = [], 0
    for image_id, n in zip(image_ids, np.asarray(bbox_num).reshape(-1)):
        for cls, score, x1, y1, x2, y2 in np.asarray(bbox)[start:start + int(n)]:
            results.append({"image_id": int(image_id), "category_id": int(cls) + 1,
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
        start += int(n)
    return results


@paddle.no_grad()
def evaluate_detector(model, loader, desc="eval"):
    """Run `model` (PicoDetModel) over a DetEvalLoader; returns coco_ap's dict."""
    was_training = model.training
    model.eval()
    detections = []
    try:
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
            bbox, bbox_num = model(paddle.to_tensor(batch["image"]), paddle.to_tensor(batch["im_shape"]),
                                   paddle.to_tensor(batch["scale_factor"]))
            detections += to_coco_results(bbox.numpy(), bbox_num.numpy(), batch["im_id"])
    finally:
        if was_training:
            model.train()
    return coco_ap(loader.coco, detections)
