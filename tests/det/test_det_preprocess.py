"""DetPredictor's preprocessing matches PP-ShiTu's numpy ops; box selection rules."""
import numpy as np
import pytest

from ppshitu.errors import ConfigError
from ppshitu.infer.det import DetPreprocess, select_boxes

PPSHITU_OPS = [{"DetResize": {"interp": 2, "keep_ratio": False, "target_size": [64, 96]}},
               {"DetNormalizeImage": {"is_scale": True, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
               {"DetPermute": {}}]


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_matches_paddleclas_det_preprocess(keep_ratio):
    from paddleclas.deploy.python.det_preprocess import DetNormalizeImage, DetPermute, DetResize

    ops = [dict(PPSHITU_OPS[0]), PPSHITU_OPS[1], PPSHITU_OPS[2]]
    ops[0] = {"DetResize": dict(ops[0]["DetResize"], keep_ratio=keep_ratio)}
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    image, im_info = rgb, {"input_shape": [3, 0, 0]}
    for ref in (DetResize(**ops[0]["DetResize"]), DetNormalizeImage(**ops[1]["DetNormalizeImage"]), DetPermute()):
        image, im_info = ref(image, im_info)
    chw, im_shape, scale_factor = DetPreprocess.from_transform_ops(ops)(rgb)
    assert chw.dtype == np.float32 and chw.shape == image.shape
    np.testing.assert_allclose(chw, image, atol=1e-5)
    np.testing.assert_allclose(im_shape, im_info["im_shape"])
    np.testing.assert_allclose(scale_factor, im_info["scale_factor"], rtol=1e-6)


def test_spec_round_trip():
    pre = DetPreprocess.from_transform_ops(PPSHITU_OPS)
    assert pre.spec() == {"input_size": [64, 96], "interpolation": "bicubic", "scale": 1 / 255.0,
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    again = DetPreprocess.from_spec(pre.spec())
    rgb = np.full((30, 40, 3), 77, np.uint8)
    np.testing.assert_array_equal(again(rgb)[0], pre(rgb)[0])


@pytest.mark.parametrize("ops, message", [
    ([{"DetResize": {"target_size": [64, 64]}}, {"DetBlur": {}}, {"DetPermute": {}}], r"\[1\].DetBlur: unsupported"),
    ([{"DetResize": {"target_size": [64, 64], "interpp": 2}}, {"DetPermute": {}}], "unknown key 'interpp'"),
    ([{"DetResize": {"target_size": [64, 64], "interp": 9}}, {"DetPermute": {}}], "interp: expected a cv2 code"),
    ([{"DetNormalizeImage": {}}, {"DetPermute": {}}], "missing DetResize"),
    ("DetResize", "expected a list"),
])
def test_bad_transform_ops_are_named(ops, message):
    with pytest.raises(ConfigError, match=message):
        DetPreprocess.from_transform_ops(ops)


def test_select_boxes_thresholds_clips_sorts_and_caps():
    rows = np.array([[0, 0.3, -5, 10, 50, 60],     # clipped to x1 = 0
                     [0, 0.9, 10, 10, 20, 20],
                     [0, 0.1, 0, 0, 5, 5],         # below threshold
                     [0, 0.5, 90, 10, 130, 70],    # clipped to the 100x80 image
                     [0, 0.8, 120, 10, 150, 20],   # wholly outside: empty after clipping
                     [0, 0.4, 1, 1, 2, 2]], np.float32)
    out = select_boxes(rows, height=80, width=100, threshold=0.2, max_det_results=3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[10, 10, 20, 20, 0.9], [90, 10, 100, 70, 0.5], [1, 1, 2, 2, 0.4]])
    assert select_boxes(np.zeros((0, 6)), 80, 100, 0.2, 5).shape == (0, 5)
