"""The pieces the two library benchmarks are built from: the near-duplicate generator, pair scoring,
recall@1 and the autoencoder's shapes (the benchmarks themselves take minutes)."""
import os
import sys

import numpy as np
import pytest

from ppshitu.library import photos

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_photo_sets_are_disjoint_and_load():
    sets = [photos.BENCH_PHOTOS, photos.BENCH_TEXTURES, photos.CALIBRATION_PHOTOS, photos.CALIBRATION_TEXTURES]
    names = [n for s in sets for n in s]
    assert len(names) == len(set(names))
    img = photos.load_photo("camera")                       # a grey one comes as RGB
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_distinct_crops_barely_overlap_and_edits_change_the_image():
    rng = np.random.default_rng(0)
    images = photos.distinct_images(["astronaut"], 6, rng, size=128)
    assert images[0][0] == "astronaut" and max(images[0][1].shape[:2]) == 128 and len(images) >= 3
    base = images[0][1]
    for kind in photos.EDITS:
        out = photos.edit(base, kind, rng)
        assert out.dtype == np.uint8 and out.ndim == 3
        assert out.shape != base.shape or np.abs(out.astype(int) - base).mean() > 0.5, kind
    with pytest.raises(ValueError):
        photos.edit(base, "sharpen", rng)
    s = photos.near_duplicate_set(images, 2, 2, rng)
    assert len(s) == len(images) + 4 and sum(e is None for *_, e in s) == len(images)
    assert len(photos.duplicate_pairs([f for _, _, f, _ in s])) == 2 * 3


def test_duplicate_bench_scoring():
    import bench_duplicates as bd

    rows = [{"name": n, "family": f, "subset": "natural", "edit": e}
            for n, f, e in (("a", 1, None), ("b", 1, "jpeg"), ("c", 2, None), ("d", 2, "crop"), ("e", 3, None))]
    truth = bd.truth_pairs(rows)
    assert truth == {("a", "b"), ("c", "d")}
    pred = {("a", "b"), ("a", "e")}
    assert bd.scores(pred, truth) == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "predicted_pairs": 2,
                                      "true_pairs": 2}
    assert bd.edit_recall(pred, rows) == {"crop": 0.0, "jpeg": 1.0}


def test_ssl_bench_pieces():
    import paddle
    import bench_ssl as bs

    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    assert bs.recall_at_1(v, [0, 0, 1, 1]) == 1.0 and bs.recall_at_1(v, [0, 1, 0, 1]) == 0.0
    check, test = bs.split_held([(None, c) for c in (0, 0, 1, 1, 2, 2, 3)])
    assert {c for _, c in check} == {0, 2} and {c for _, c in test} == {1, 3}
    enc, dec = bs.build_autoencoder({"channels": [8, 16, 32], "bottleneck": 4})
    x = paddle.rand([2, 3, 64, 64])
    code = enc(x)
    assert code.shape == [2, 4, 8, 8] and dec(code).shape == [2, 3, 64, 64]
    rng = np.random.default_rng(0)
    aug = {"RandomResizedCrop": {"scale": [0.3, 1]},
           "ColorJitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "p": 1.0}}
    view = bs.simclr_view(np.zeros((50, 70, 3), np.uint8) + 100, 32, aug, rng)
    assert view.shape == (32, 32, 3) and 0 <= view.min() and view.max() <= 255
