"""COCO-format detection annotations -> per-image records for training and evaluation.

Structural problems (missing keys, a bbox that is not four numbers, an annotation of
an unknown image or category) raise DetDataError naming the file and the annotation.
Boxes that are empty or lie outside their image are skipped with one warning each, and
the count is reported, so a few bad labels do not stop a long run silently or loudly.
"""
import logging
import os
from dataclasses import dataclass

import numpy as np

from ..errors import PPShiTuError
from ..utils.files import MAX_ANNOTATION_BYTES, read_input_json

log = logging.getLogger(__name__)

FOREGROUND = "foreground"


class DetDataError(PPShiTuError, ValueError):
    """A detection annotation file is missing or malformed."""


@dataclass
class DetRecord:
    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray     # float32 [N, 4] x1, y1, x2, y2 in pixels
    classes: np.ndarray   # int64 [N], 0-based contiguous class index


@dataclass
class CocoSet:
    json_path: str
    records: list
    label_list: list      # class index -> name
    category_ids: list    # class index -> COCO category id (for writing results)
    skipped_boxes: int
    empty_images: int


def _load_json(path):
    # regular files only (a FIFO would block the read), at most MAX_ANNOTATION_BYTES (utils/files.py)
    data = read_input_json(path, "annotation file", MAX_ANNOTATION_BYTES, DetDataError,
                           missing=f"annotation file not found: {path}", invalid="{path}: not valid JSON: {e}")
    if not isinstance(data, dict):
        raise DetDataError(f"{path}: expected a COCO object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DetDataError(f"{path}: missing or invalid '{key}' list (COCO format)")
    return data


def _field(obj, key, kind, path, what):
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        raise DetDataError(f"{path}: {what} has no valid '{key}' (got {value!r})")
    return value


def load_coco(json_path, image_root=None, foreground=True, keep_empty=True):
    """Read a COCO json into a CocoSet.

    `image_root` defaults to `<json dir>/images` when that exists, else the json's dir.
    `foreground=True` maps every category to the single class "foreground" (PP-ShiTu's
    mainbody detector); False keeps categories as classes, in category id order.
    `keep_empty=False` drops images without boxes (training); evaluation keeps them."""
    data = _load_json(json_path)
    if image_root is None:
        base = os.path.dirname(os.path.abspath(json_path))
        image_root = os.path.join(base, "images") if os.path.isdir(os.path.join(base, "images")) else base
    cats = sorted(_field(c, "id", int, json_path, f"categories[{i}]") for i, c in enumerate(data["categories"]))
    if not cats and data["annotations"]:
        raise DetDataError(f"{json_path}: annotations but no categories")
    names = {c["id"]: str(c.get("name", c["id"])) for c in data["categories"]}
    if foreground:
        cat_index, label_list, category_ids = {c: 0 for c in cats}, [FOREGROUND], [cats[0] if cats else 1]
    else:
        cat_index, label_list, category_ids = {c: i for i, c in enumerate(cats)}, [names[c] for c in cats], cats

    images = {}
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = _field(im, "id", int, json_path, where)
        if image_id in images:
            raise DetDataError(f"{json_path}: {where}: duplicate image id {image_id}")
        file_name = _field(im, "file_name", str, json_path, where)
        images[image_id] = DetRecord(image_id, os.path.join(image_root, file_name),
                                     _field(im, "width", int, json_path, where),
                                     _field(im, "height", int, json_path, where), [], [])

    skipped = 0
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else '?'})"
        image_id = _field(ann, "image_id", int, json_path, where)
        if image_id not in images:
            raise DetDataError(f"{json_path}: {where}: image_id {image_id} is not in images")
        cat = _field(ann, "category_id", int, json_path, where)
        if cat not in cat_index:
            raise DetDataError(f"{json_path}: {where}: category_id {cat} is not in categories {cats}")
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise DetDataError(f"{json_path}: {where}: bbox must be [x, y, width, height] numbers, got {bbox!r}")
        if ann.get("iscrowd", 0):
            continue
        rec = images[image_id]
        x, y, w, h = map(float, bbox)
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, rec.width), min(y + h, rec.height)
        if not (np.isfinite([x, y, w, h]).all() and x2 - x1 >= 1 and y2 - y1 >= 1):
            log.warning("%s: %s: skipping box %s: empty or outside its %dx%d image", json_path, where, bbox,
                        rec.width, rec.height)
            skipped += 1
            continue
        rec.boxes.append([x1, y1, x2, y2])
        rec.classes.append(cat_index[cat])

    records, empty = [], 0
    for rec in images.values():
        rec.boxes = np.array(rec.boxes, np.float32).reshape(-1, 4)
        rec.classes = np.array(rec.classes, np.int64)
        if len(rec.boxes) == 0:
            empty += 1
            if not keep_empty:
                continue
        records.append(rec)
    if skipped:
        log.warning("%s: skipped %d malformed boxes", json_path, skipped)
    if empty and not keep_empty:
        log.warning("%s: %d images have no boxes and are left out of training", json_path, empty)
    if not records:
        raise DetDataError(f"{json_path}: no usable images" + (" with boxes" if not keep_empty else ""))
    return CocoSet(json_path, records, label_list, category_ids, skipped, empty)
