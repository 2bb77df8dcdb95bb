"""The synthetic generators: determinism, file formats, and annotations that match the pixels."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset import synthetic
from ppshitu.utils.image import read_image

ROOT = Path(__file__).resolve().parents[2]
REC = dict(num_classes=12, views_per_class=4, image_size=64, num_train_classes=8)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _rows(path, sep=" "):
    return [line.split(sep) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """Two sets from seed 0 and one from seed 1."""
    roots = [tmp_path_factory.mktemp(name) for name in ("rec_a", "rec_b", "rec_seed1")]
    for root, seed in zip(roots, (0, 0, 1)):
        synthetic.make_recognition_set(root, seed=seed, **REC)
    return roots


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    synthetic.make_mini_cub(root, images_per_class=2, image_size=64)
    return root / "CUB_200_2011"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    synthetic.make_scenes(root, num_images=5, objects_per_image=(3, 3), object_classes=[40, 41, 70], split="val")
    return root


# --------------------------------------------------------------------------- determinism
def test_same_seed_writes_identical_files(rec):
    a, b = _files(rec[0]), _files(rec[1])
    assert a.keys() == b.keys() and len(a) == 12 * 4 + 5
    assert a == b
    sample = "images/class_0003/002.jpg"
    assert np.array_equal(read_image(rec[0] / sample), read_image(rec[1] / sample))


def test_different_seed_changes_images_not_layout(rec):
    a, c = _files(rec[0]), _files(rec[2])
    assert a.keys() == c.keys()
    assert a[Path("train_list.txt")] == c[Path("train_list.txt")]
    sample = "images/class_0003/002.jpg"
    assert not np.array_equal(read_image(rec[0] / sample), read_image(rec[2] / sample))


def test_seed_must_be_a_non_negative_int(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        synthetic.make_scenes(tmp_path, num_images=1, seed=-1)


# --------------------------------------------------------------------------- objects
def test_render_object_is_a_tight_sprite_of_the_requested_size():
    for class_id in range(10):
        for rng in (None, np.random.default_rng(class_id)):
            sprite = synthetic.render_object(class_id, rng, 48)
            assert sprite.dtype == np.uint8 and sprite.shape[2] == 4 and max(sprite.shape[:2]) == 48
            alpha = sprite[..., 3]
            assert min(edge.max() for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1])) >= 32


def test_views_follow_the_generator_and_classes_differ():
    view = [synthetic.render_object(5, np.random.default_rng(seed), 48) for seed in (0, 0, 1)]
    assert np.array_equal(view[0], view[1]) and not np.array_equal(view[0], view[2])
    a, b = synthetic.render_object(5, None, 48), synthetic.render_object(6, None, 48)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_classes_have_distinct_traits_but_share_colours():
    combos = len(synthetic.SHAPES) * len(synthetic.PATTERNS) * len(synthetic.PALETTES)
    specs = [synthetic.object_spec(c) for c in range(combos)]
    assert len({(s.shape, s.pattern, s.palette) for s in specs}) == len(specs)
    assert len({s.name for s in specs}) == len(specs)
    first = [s.palette for s in specs[:synthetic.DEFAULT_NUM_CLASSES]]
    assert max(first.count(p) for p in first) >= 3, "colour alone should not identify a class"
    assert synthetic.class_name(37).endswith(" 37")


# --------------------------------------------------------------------------- recognition set
def test_recognition_lists_parse_and_split_classes(rec):
    root = rec[0]
    train, test = _rows(root / "train_list.txt"), _rows(root / "test_list.txt")
    for rel, label, uid in train + test:
        assert (root / rel).is_file() and label.isdigit() and uid.isdigit()
    assert len({uid for _, _, uid in train + test}) == 12 * 4
    train_labels, test_labels = {int(r[1]) for r in train}, {int(r[1]) for r in test}
    assert train_labels == set(range(8)) and test_labels == set(range(8, 12))
    assert read_image(root / train[0][0]).shape == (64, 64, 3)


def test_gallery_and_query_cover_test_classes_by_name(rec):
    root = rec[0]
    names = dict(_rows(root / "class_names.txt", "\t"))
    assert len(names) == 12 and len(set(names.values())) == 12
    gallery, query = _rows(root / "gallery_list.txt", "\t"), _rows(root / "query_list.txt", "\t")
    assert len(gallery) == 4 * 2 and len(query) == 4 * 2
    assert not {rel for rel, _ in gallery} & {rel for rel, _ in query}
    test_names = {names[str(label)] for label in range(8, 12)}
    assert {name for _, name in gallery} == {name for _, name in query} == test_names
    label_of = {rel: label for rel, label, _ in _rows(root / "test_list.txt")}
    for rel, name in gallery + query:
        assert name == names[label_of[rel]]


def test_recognition_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="num_train_classes"):
        synthetic.make_recognition_set(tmp_path, num_classes=4, num_train_classes=4)
    with pytest.raises(ValueError, match="gallery_views"):
        synthetic.make_recognition_set(tmp_path, views_per_class=2, gallery_views=2)


# --------------------------------------------------------------------------- mini CUB
def test_cub_index_files_agree(cub):
    images = dict(_rows(cub / "images.txt"))
    classes = dict(_rows(cub / "classes.txt"))
    labels = dict(_rows(cub / "image_class_labels.txt"))
    split = dict(_rows(cub / "train_test_split.txt"))
    boxes = {i: list(map(float, rest)) for i, *rest in _rows(cub / "bounding_boxes.txt")}
    ids = [str(i) for i in range(1, 401)]
    assert [list(d) for d in (images, labels, split, boxes)] == [ids] * 4
    assert list(classes) == [str(i) for i in range(1, 201)]
    assert list(classes.values()) == synthetic.cub_class_dirs()
    assert all(re.fullmatch(r"\d{3}\.[A-Za-z]+(_[A-Za-z]+)+", d) for d in classes.values())
    assert classes["1"] == "001.Black_footed_Albatross"
    assert set(split.values()) == {"0", "1"}
    for i in ids:
        class_dir, file_name = images[i].split("/")
        assert class_dir == classes[labels[i]] and class_dir == f"{int(labels[i]):03d}.{class_dir[4:]}"
        stem = "_".join(w.capitalize() for w in class_dir[4:].split("_"))
        assert re.fullmatch(rf"{stem}_\d{{4}}_\d+\.jpg", file_name)


def test_cub_boxes_lie_inside_their_images(cub):
    images = dict(_rows(cub / "images.txt"))
    for image_id, *box in _rows(cub / "bounding_boxes.txt")[::7]:
        x, y, w, h = map(float, box)
        height, width = read_image(cub / "images" / images[image_id]).shape[:2]
        assert 0 <= x and 0 <= y and w > 8 and h > 8 and x + w <= width and y + h <= height


# --------------------------------------------------------------------------- scenes
@pytest.mark.parametrize("n", [1, 3, 5])
def test_scene_has_exactly_n_visible_objects_in_their_boxes(n):
    for seed in range(4):
        scene = synthetic.render_scene(np.random.default_rng(seed), (240, 320), list(range(60)), n)
        assert len(scene.objects) == n and scene.image.shape == (240, 320, 3)
        change = np.abs(scene.image.astype(np.float32) - scene.background).mean(-1)
        outside = np.ones(change.shape, bool)
        for obj in scene.objects:
            x1, y1, x2, y2 = map(int, obj.box)
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240 and obj.box == [x1, y1, x2, y2]
            outside[y1:y2, x1:x2] = False
        for obj in scene.objects:
            x1, y1, x2, y2 = map(int, obj.box)
            inside = change[y1:y2, x1:x2].mean()
            assert inside > 2 * change[outside].mean() and inside > 8, "box without its object"


def test_scene_json_is_coco_with_object_labels(scenes):
    coco = json.loads((scenes / "val.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "foreground"}]
    assert [img["id"] for img in coco["images"]] == [1, 2, 3, 4, 5]
    per_image = {img["id"]: 0 for img in coco["images"]}
    sizes = {img["id"]: (img["height"], img["width"]) for img in coco["images"]}
    for img in coco["images"]:
        assert read_image(scenes / "images" / img["file_name"]).shape[:2] == sizes[img["id"]]
    for ann in coco["annotations"]:
        per_image[ann["image_id"]] += 1
        x, y, w, h = ann["bbox"]
        height, width = sizes[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and ann["area"] == w * h
        assert ann["category_id"] == 1 and ann["iscrowd"] == 0
        assert ann["object_label"] in (40, 41, 70)
        assert ann["object_name"] == synthetic.class_name(ann["object_label"])
    assert set(per_image.values()) == {3}
    assert len({ann["id"] for ann in coco["annotations"]}) == 15


def test_splits_differ_under_one_seed(tmp_path):
    for split in ("train", "val"):
        synthetic.make_scenes(tmp_path, num_images=1, objects_per_image=(1, 1), split=split)
    train, val = (read_image(tmp_path / "images" / f"{s}_000001.jpg") for s in ("train", "val"))
    assert not np.array_equal(train, val)


def test_objects_per_image_is_checked(tmp_path):
    with pytest.raises(ValueError, match="objects_per_image"):
        synthetic.make_scenes(tmp_path, num_images=1, objects_per_image=(0, 2))


# --------------------------------------------------------------------------- CLI
def test_cli_runs_as_a_script_from_the_repo_root(tmp_path):
    out = tmp_path / "scenes"
    result = subprocess.run(
        [sys.executable, "dataset/make_synthetic.py", "scenes", "--out", str(out), "--train-scenes", "2",
         "--val-scenes", "1", "--classes", "3-4,9", "--objects-per-image", "2", "2"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    assert "train.json" in result.stdout and "val.json" in result.stdout
    train = json.loads((out / "train.json").read_text())
    assert len(train["annotations"]) == 4 and {a["object_label"] for a in train["annotations"]} <= {3, 4, 9}
