"""Generated images for the benchmark, written once into the bench cache.

  gallery/  a recognition set (make_recognition_set) and `gallery_list.txt`, PP-ShiTu's
            `relpath<TAB>label` list over all of its images
  scenes_N/ scenes with exactly N objects (make_scenes with objects_per_image=(N, N))
"""
import json
from pathlib import Path

from harness import BENCH

DATA = BENCH / ".cache" / "data"
GALLERY_IMAGE_SIZE = 448     # product photos of a few hundred pixels, as in PP-ShiTu's demo galleries
SCENE_SIZE = (480, 640)      # H, W: a phone photo scaled down, resized to 640x640 by the detector


def gallery_set(num_images):
    """(image_root, list_file, n) of a recognition set with `num_images` images (a multiple of 8)."""
    from dataset.synthetic import make_recognition_set

    views = 8
    root = DATA / f"gallery_{num_images}"
    list_file = root / "gallery_all.txt"
    if not list_file.is_file():
        make_recognition_set(root, num_classes=max(2, num_images // views), views_per_class=views,
                             image_size=GALLERY_IMAGE_SIZE, gallery_views=1)
        names = dict(line.split("\t") for line in (root / "class_names.txt").read_text().splitlines())
        rows = []
        for name in ("train_list.txt", "test_list.txt"):
            for line in (root / name).read_text().splitlines():
                rel, label = line.split()[:2]
                rows.append(f"{rel}\t{names[label]}")
        list_file.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    n = sum(1 for _ in list_file.open(encoding="utf-8"))
    return root, list_file, n


def gallery_head(list_file, num_images):
    """A list file of the first `num_images` lines of `list_file`, beside it: a smaller gallery of
    the same images (the process rows time two sizes of one set for a steady-state rate)."""
    out = Path(list_file).with_name(f"gallery_first_{num_images}.txt")
    lines = Path(list_file).read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) < num_images:
        raise ValueError(f"{list_file} has {len(lines)} images, fewer than {num_images}")
    if not out.is_file():
        out.write_text("".join(lines[:num_images]), encoding="utf-8")
    return out


def scene_images(num_objects, num_images):
    """Paths of `num_images` scenes with exactly `num_objects` objects each."""
    from dataset.synthetic import make_scenes

    root = DATA / f"scenes_{num_objects}_{num_images}"
    ann = root / "bench.json"
    if not ann.is_file():
        make_scenes(root, num_images=num_images, image_size=SCENE_SIZE,
                    objects_per_image=(num_objects, num_objects), seed=num_objects, split="bench")
    coco = json.loads(ann.read_text(encoding="utf-8"))
    return [str(root / "images" / img["file_name"]) for img in coco["images"]]
