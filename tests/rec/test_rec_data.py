"""List-file dataset, transforms, P×K sampler and loader: shapes, determinism, bad input."""
import logging

import cv2
import numpy as np
import pytest

from ppshitu.rec.data.dataset import ListDataset, ListFileError
from ppshitu.rec.data.loader import BadImageReport, build_dataloader
from ppshitu.rec.data.sampler import PKSampler, PlainBatchSampler
from ppshitu.rec.data.transforms import build_transforms, eval_spec
from ppshitu.errors import ConfigError

EVAL_OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": [24, 16], "interpolation": "bicubic"}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                                "order": "hwc"}}, {"ToCHWImage": {}}]
TRAIN_OPS = [{"DecodeImage": {}}, {"RandCropImage": {"size": 16, "scale": [0.5, 1.0]}},
             {"RandFlipImage": {"flip_code": 1}}, {"NormalizeImage": {}}, {"ToCHWImage": {}},
             {"RandomErasing": {"EPSILON": 1.0}}]


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """6 classes x 3 images of 20x30 pixels, a list with uids."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    rows = []
    for c in range(6):
        for k in range(3):
            rel = f"c{c}/{k}.png"
            (root / f"c{c}").mkdir(exist_ok=True)
            cv2.imwrite(str(root / rel), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
            rows.append(f"{rel} {10 + c} {c * 3 + k}")
    (root / "list.txt").write_text("\n".join(rows) + "\n")
    return root


def test_eval_transform_values_and_spec():
    img = np.full((10, 12, 3), (255, 128, 0), np.uint8)
    ops = build_transforms(EVAL_OPS, "DataLoader.Eval.Query.dataset.transform_ops")
    out = ops(img, np.random.default_rng(0))
    assert out.shape == (3, 16, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 5, 5], [(1 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25, -2.0], atol=1e-5)
    assert eval_spec(ops) == {"input_size": [16, 24], "interpolation": "bicubic", "scale": pytest.approx(1 / 255),
                              "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    with pytest.raises(ConfigError, match="export needs an eval pipeline"):
        eval_spec(build_transforms(TRAIN_OPS, "x"))


def test_random_transforms_depend_on_the_rng_only():
    img = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    ops = build_transforms(TRAIN_OPS, "DataLoader.Train.dataset.transform_ops")
    a, b = ops(img, np.random.default_rng([1, 2])), ops(img, np.random.default_rng([1, 2]))
    c = ops(img, np.random.default_rng([1, 3]))
    assert a.shape == (3, 16, 16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("ops, match", [
    ([{"ResizeImg": {"size": 4}}], r"transform_ops\[0\].*unknown transform 'ResizeImg'.*did you mean ResizeImage"),
    ([{"ResizeImage": {"size": 4, "interp": "nearest"}}], r"unknown key 'interp'"),
    ([{"NormalizeImage": {"scale": "1/0"}}], r"division by zero"),
    ([{"ResizeImage": {"size": [4]}}], r"ResizeImage: size must be a list of 2 values"),  # its CONFIG_SCHEMA
    ([{"ResizeImage": {"size": 0}}], r"ResizeImage: size must be from 1 to 16384"),
])
def test_transform_config_errors(ops, match):
    with pytest.raises(ConfigError, match=match):
        build_transforms(ops, "DataLoader.Train.dataset.transform_ops")


def test_dataset_items_and_relabel(image_tree):
    ds = ListDataset(str(image_tree), str(image_tree / "list.txt"), EVAL_OPS, relabel=True)
    img, label, uid, bad = ds[4]
    assert img.shape == (3, 16, 24) and label == 1 and uid == 4 and bad == -1
    assert ds.class_num == 6 and sorted(set(ds.labels.tolist())) == list(range(6)) and ds.has_uids


def test_missing_and_corrupt_images_are_skipped_with_warnings(image_tree, tmp_path, caplog):
    lines = (image_tree / "list.txt").read_text().splitlines()
    lines.append("c0/nope.png 10 99")
    listfile = tmp_path / "list.txt"
    listfile.write_text("\n".join(lines) + "\n")
    corrupt = image_tree / "c1" / "1.png"
    original = corrupt.read_bytes()
    corrupt.write_bytes(b"garbage")
    try:
        with caplog.at_level(logging.WARNING, "ppshitu.data"):
            section = {"dataset": {"name": "ListDataset", "image_root": str(image_tree),
                                   "cls_label_path": str(listfile), "transform_ops": EVAL_OPS},
                       "sampler": {"name": "DistributedBatchSampler", "batch_size": 5}}
            loader, ds = build_dataloader(section, "DataLoader.Eval.Query")
            report = BadImageReport(ds)
            seen = 0
            for _ in range(2):  # two passes: still one warning per file
                for batch in loader:
                    report.add(batch["bad"].numpy())
                    seen += batch["image"].shape[0]
            assert report.summary() == 1
    finally:
        corrupt.write_bytes(original)
    assert len(ds) == 18 and seen == 36
    text = caplog.text
    assert "nope.png" in text and "1 of 19 images missing" in text
    assert text.count("c1/1.png") == 1 and "1 undecodable image(s) skipped" in text


def test_list_file_errors(tmp_path):
    with pytest.raises(ListFileError, match="list file not found"):
        ListDataset(str(tmp_path), str(tmp_path / "none.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 1 2\nb.jpg x\n")
    with pytest.raises(ListFileError, match=r"bad.txt:2: label and uid must be integers"):
        ListDataset(str(tmp_path), str(bad))
    bad.write_text("a.jpg 1\n")
    with pytest.raises(ListFileError, match="none of its 1 images exists"):
        ListDataset(str(tmp_path), str(bad))


class _Labels:
    def __init__(self, labels):
        self.labels = labels

    def indices_by_label(self):
        out = {}
        for i, v in enumerate(self.labels):
            out.setdefault(v, []).append(i)
        return out

    def __len__(self):
        return len(self.labels)


def test_pk_sampler_batches_are_p_classes_by_k():
    labels = [c for c in range(10) for _ in range(5 + c % 3)]
    s = PKSampler(_Labels(labels), batch_size=12, num_instances=3, seed=1, rank=0, world_size=1)
    s.set_epoch(2)
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        idx = [i for i, _ in b]
        per_class = {}
        for i in idx:
            per_class[labels[i]] = per_class.get(labels[i], 0) + 1
        assert len(idx) == 12 and sorted(per_class.values()) == [3, 3, 3, 3]
    keys = [k for b in batches for _, k in b]
    assert len(set(keys)) == len(keys)  # each position its own augmentation
    covered = {i for b in batches for i, _ in b}
    assert len(covered) > 0.7 * len(labels)
    assert [b for b in s] == batches  # same epoch, same batches
    s.set_epoch(3)
    assert list(s) != batches


def test_pk_sampler_splits_batches_between_ranks():
    labels = [c for c in range(8) for _ in range(4)]
    ranks = [PKSampler(_Labels(labels), 8, 2, seed=0, rank=r, world_size=2) for r in range(2)]
    single = PKSampler(_Labels(labels), 16, 2, seed=0, rank=0, world_size=1)  # the same global batch
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) and a != b
    assert [x + y for x, y in zip(a, b)] == list(single)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 10, "num_instances": 4}, r"batch_size \(10\) must be a positive multiple of num_instances \(4\)"),
    ({"batch_size": 64, "num_instances": 2}, r"32 classes per batch, but the data set has only 10 classes"),
    ({"batch_size": 4, "num_instances": 4}, r"1 class per batch"),
    ({"batch_size": 8, "num_instances": 0}, r"num_instances .* must be a positive int"),
])
def test_pk_sampler_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PKSampler(_Labels([c for c in range(10) for _ in range(4)]), rank=0, world_size=1, **kwargs)


def test_plain_sampler_covers_everything_once():
    s = PlainBatchSampler(_Labels(list(range(11))), batch_size=4, rank=0, world_size=1)
    assert [[i for i, _ in b] for b in s] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]] and len(s) == 3
