"""Training augmentation keeps boxes on their objects; batches are padded and reproducible."""
import numpy as np
import pytest

from ppshitu.det.transforms import BatchRandomResize, RandomCrop, RandomDistort, RandomFlip
from ppshitu.errors import ConfigError


def _sample(h=60, w=80):
    """A black image with two white rectangles, whose boxes are the rectangles."""
    img = np.zeros((h, w, 3), np.uint8)
    boxes = np.array([[10, 5, 30, 25], [50, 30, 75, 55]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    return {"image": img, "boxes": boxes, "classes": np.zeros(2, np.int64), "im_id": 1}


def _white_fraction(sample):
    """Fraction of white pixels inside each box (1.0 when boxes sit exactly on the objects)."""
    img = sample["image"]
    return [img[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].min(-1).mean() / 255
            for x1, y1, x2, y2 in sample["boxes"]]


def test_flip_moves_boxes_with_the_pixels():
    out = RandomFlip(prob=1.0)(_sample(), np.random.default_rng(0))
    np.testing.assert_allclose(out["boxes"], [[50, 5, 70, 25], [5, 30, 30, 55]])
    assert _white_fraction(out) == [1.0, 1.0]
    assert RandomFlip(prob=0.0)(_sample(), np.random.default_rng(0))["boxes"][0, 0] == 10


def test_crop_keeps_boxes_on_their_objects():
    crop = RandomCrop(allow_no_crop=False, thresholds=(0.0,))
    cropped = 0
    for seed in range(20):
        out = crop(_sample(), np.random.default_rng(seed))
        h, w = out["image"].shape[:2]
        cropped += (h, w) != (60, 80)
        assert len(out["boxes"]) >= 1 and len(out["boxes"]) == len(out["classes"])
        assert np.all(out["boxes"][:, [0, 2]] <= w) and np.all(out["boxes"][:, [1, 3]] <= h)
        assert np.all(out["boxes"] >= 0) and min(_white_fraction(out)) == 1.0
    assert cropped >= 15


def test_distort_changes_colours_not_geometry():
    s = _sample()
    s["image"][:] = 100
    out = RandomDistort(prob=1.0)(s, np.random.default_rng(3))
    assert out["image"].shape == (60, 80, 3) and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], s["image"])
    np.testing.assert_array_equal(out["boxes"], s["boxes"])


def test_batch_resize_uses_one_size_per_batch_and_scales_boxes():
    t = BatchRandomResize(target_size=[64, [96, 128]], random_interp=True)
    sizes = set()
    for seed in range(10):
        out = t([_sample(), _sample(40, 40)], np.random.default_rng(seed))
        shapes = {o["image"].shape for o in out}
        assert len(shapes) == 1
        (h, w, _), = shapes
        sizes.add((h, w))
        np.testing.assert_allclose(out[0]["boxes"][0], [10 * w / 80, 5 * h / 60, 30 * w / 80, 25 * h / 60],
                                   rtol=1e-5)
    assert sizes == {(64, 64), (96, 128)}


def test_batch_resize_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="BatchRandomResize.target_size"):
        BatchRandomResize(target_size=[8])
