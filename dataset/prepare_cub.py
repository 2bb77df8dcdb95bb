#!/usr/bin/env python
"""Write PaddleClas retrieval lists for CUB_200_2011 without touching the images:

    python dataset/prepare_cub.py path/to/CUB_200_2011                 # lists into that directory
    python dataset/prepare_cub.py path/to/CUB_200_2011 --crop-bbox --out data/cub_crops

train_list.txt holds classes 1-100, test_list.txt classes 101-200 (the open-set split
of the metric-learning literature), one `relpath label uid` per line: relpath relative
to the output directory (use it as image_root), label the CUB class id, uid the CUB
image id. Nothing is moved or copied; --crop-bbox writes cropped copies under
OUT/crops/ (bounding_boxes.txt), since a crop is a new image.
"""
import argparse
import logging
import os
import sys

import cv2
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.cli import run_main  # noqa: E402
from ppshitu.errors import PPShiTuError  # noqa: E402
from ppshitu.utils.image import ImageReadError, read_image  # noqa: E402

log = logging.getLogger("prepare_cub")
TRAIN_CLASSES = range(1, 101)


def _read_table(path, columns):
    """{image id: fields} from a CUB `id field...` file; errors name the file and line."""
    if not os.path.isfile(path):
        raise PPShiTuError(f"{path} not found: is this a CUB_200_2011 directory?")
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != columns + 1 or not parts[0].isdigit():
                raise PPShiTuError(f"{path}:{lineno}: expected an id and {columns} field(s), got {line.strip()!r}")
            table[int(parts[0])] = parts[1:]
    return table


def _crop(src, dst, box):
    img = read_image(src)
    h, w = img.shape[:2]
    x, y, bw, bh = box
    x1, y1 = max(0, int(x)), max(0, int(y))
    x2, y2 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))
    if x2 <= x1 or y2 <= y1:
        raise ImageReadError(f"{src}: bounding box {box} lies outside the {w}x{h} image")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    ok, data = cv2.imencode(os.path.splitext(dst)[1] or ".jpg", cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageReadError(f"cannot encode the crop of {src}")
    data.tofile(dst)


def prepare(cub_dir, out_dir=None, crop_bbox=False):
    """Write OUT/train_list.txt and OUT/test_list.txt; returns {name: line count}."""
    out_dir = out_dir or cub_dir
    images = _read_table(os.path.join(cub_dir, "images.txt"), 1)
    labels = _read_table(os.path.join(cub_dir, "image_class_labels.txt"), 1)
    boxes = _read_table(os.path.join(cub_dir, "bounding_boxes.txt"), 4) if crop_bbox else {}
    os.makedirs(out_dir, exist_ok=True)
    lines = {"train_list.txt": [], "test_list.txt": []}
    skipped = 0
    for image_id in tqdm(sorted(images), desc="CUB lists", unit="img", disable=not crop_bbox):
        if image_id not in labels:
            raise PPShiTuError(f"image_class_labels.txt has no label for image {image_id}")
        rel = images[image_id][0]
        src = os.path.join(cub_dir, "images", rel)
        if crop_bbox:
            if image_id not in boxes:
                raise PPShiTuError(f"bounding_boxes.txt has no box for image {image_id}")
            path = os.path.join(out_dir, "crops", rel)
            try:
                _crop(src, path, [float(v) for v in boxes[image_id]])
            except ImageReadError as e:
                log.warning("skipped: %s", e)
                skipped += 1
                continue
        else:
            path = src
            if not os.path.isfile(path):
                log.warning("skipped: %s not found", path)
                skipped += 1
                continue
        label = int(labels[image_id][0])
        name = "train_list.txt" if label in TRAIN_CLASSES else "test_list.txt"
        lines[name].append(f"{os.path.relpath(path, out_dir)} {label} {image_id}")
    for name, rows in lines.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.writelines(row + "\n" for row in rows)
    if skipped:
        log.warning("%d image(s) skipped", skipped)
    return {name: len(rows) for name, rows in lines.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cub_dir", help="the CUB_200_2011 directory (with images.txt, images/)")
    parser.add_argument("--out", default=None, help="where the lists go (default: cub_dir); use it as image_root")
    parser.add_argument("--crop-bbox", action="store_true", help="train on bounding-box crops (written to OUT/crops)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    counts = prepare(args.cub_dir, args.out, args.crop_bbox)
    out = args.out or args.cub_dir
    print(", ".join(f"{os.path.join(out, k)}: {v} images" for k, v in counts.items()))


if __name__ == "__main__":
    run_main(main)
