#!/usr/bin/env python
"""CUB_200_2011 bounding boxes -> COCO json with one "foreground" category, so CUB
can train and evaluate the mainbody detector.

    python dataset/cub_to_coco.py data/CUB_200_2011 --out data/cub_train.json --split train

Reads images.txt, bounding_boxes.txt (`id x y width height`, 1-based ids) and, for
--split train|test, train_test_split.txt. Image sizes are read from the image headers
(cv2 decode), so a missing or unreadable image is reported by name and left out.
`file_name` is relative to CUB_200_2011/images, the json's default image root when
written next to it; pass --image-root to the dataset config otherwise.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppshitu.cli import run_main  # noqa: E402
from ppshitu.errors import PPShiTuError  # noqa: E402
from ppshitu.utils.image import ImageReadError, read_image  # noqa: E402


def _read_table(path, columns, convert):
    """{id: row} from a whitespace-separated CUB index file, naming the file and line on errors."""
    if not path.is_file():
        raise PPShiTuError(f"{path}: not found (is this a CUB_200_2011 directory?)")
    rows = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != columns:
            raise PPShiTuError(f"{path}:{n}: expected {columns} fields, got {line!r}")
        try:
            key, values = int(parts[0]), [convert(p) for p in parts[1:]]
        except ValueError:
            raise PPShiTuError(f"{path}:{n}: cannot parse {line!r}") from None
        if key in rows:
            raise PPShiTuError(f"{path}:{n}: duplicate image id {key}")
        rows[key] = values
    return rows


def cub_to_coco(cub_dir, split="all", progress=True):
    """The COCO dict for `split` (train | test | all) of a CUB_200_2011 directory."""
    from tqdm import tqdm

    cub = Path(cub_dir)
    images = _read_table(cub / "images.txt", 2, str)
    boxes = _read_table(cub / "bounding_boxes.txt", 5, float)
    if split == "all":
        ids = sorted(images)
    else:
        is_train = _read_table(cub / "train_test_split.txt", 2, int)
        ids = sorted(i for i in images if is_train.get(i, [None])[0] == (1 if split == "train" else 0))
    coco = {"info": {"description": f"CUB_200_2011 {split} mainbody boxes"}, "images": [], "annotations": [],
            "categories": [{"id": 1, "name": "foreground"}]}
    unreadable = 0
    for image_id in tqdm(ids, desc=f"CUB {split}", unit="img", disable=not progress):
        rel = images[image_id][0]
        if image_id not in boxes:
            raise PPShiTuError(f"{cub / 'bounding_boxes.txt'}: no box for image {image_id} ({rel})")
        try:
            h, w = read_image(cub / "images" / rel).shape[:2]
        except ImageReadError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            unreadable += 1
            continue
        x, y, bw, bh = boxes[image_id]
        x2, y2 = min(x + bw, w), min(y + bh, h)
        x, y = max(x, 0.0), max(y, 0.0)
        coco["images"].append({"id": image_id, "file_name": rel, "width": w, "height": h})
        coco["annotations"].append({"id": image_id, "image_id": image_id, "category_id": 1,
                                    "bbox": [x, y, x2 - x, y2 - y], "area": (x2 - x) * (y2 - y), "iscrowd": 0})
    if unreadable:
        print(f"warning: {unreadable} images could not be read and were left out", file=sys.stderr)
    return coco


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cub_dir", help="the CUB_200_2011 directory (holding images.txt)")
    parser.add_argument("--out", required=True, help="output json path")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all")
    args = parser.parse_args(argv)
    coco = cub_to_coco(args.cub_dir, args.split)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(coco), encoding="utf-8")
    print(f"wrote {len(coco['images'])} images, {len(coco['annotations'])} boxes to {out}")


if __name__ == "__main__":
    run_main(main)
