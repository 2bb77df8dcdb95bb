"""Reduced decode (Global.reduced_decode): a large JPEG is decoded by libjpeg at 1/2-1/4-1/8 scale,
never below the model's input, for whole-image embeddings only; the trained model's embedding of it
stays the full decode's, and a gallery build with a detector decodes in full."""
import os

import cv2
import numpy as np
import pytest

from dataset.synthetic import make_recognition_set
from ppshitu.infer.preprocess import RecPreprocess
from ppshitu.utils.image import read_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_REC = os.path.join(ROOT, "models", "demo", "rec")


def _jpeg(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return str(path)


@pytest.mark.parametrize("h, w, side, expect", [
    (1600, 1200, 224, (400, 300)),   # 1/4: 300 >= 224, 1/8 would be 150
    (448, 448, 224, (224, 224)),     # exactly twice: 1/2
    (440, 600, 224, (440, 600)),     # shorter side under 2x the input: full
    (2000, 2000, 160, (250, 250)),   # 1/8
])
def test_the_largest_scale_that_keeps_the_shorter_side(tmp_path, h, w, side, expect):
    path = _jpeg(tmp_path / "a.jpg", h, w)
    assert read_image(path).shape[:2] == (h, w)
    assert read_image(path, min_side=side).shape[:2] == expect


def test_other_formats_decode_in_full(tmp_path):
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((800, 800, 3), np.uint8))
    assert read_image(path, min_side=100).shape[:2] == (800, 800)


def test_the_decode_side_is_the_resize_target():
    assert RecPreprocess([224, 224]).decode_side == 224
    assert RecPreprocess([224, 224], resize_short=256, crop_size=[224, 224]).decode_side == 256


def test_the_trained_model_sees_the_same_image(tmp_path):
    """models/demo/rec on unseen-class views rendered at 640 px: each reduced-decode embedding stays close
    to its full-decode one, and leave-one-out recall@1 loses at most one of 24 queries."""
    from ppshitu.infer.rec import RecPredictor

    make_recognition_set(tmp_path, num_classes=12, views_per_class=4, image_size=640, num_train_classes=6,
                         gallery_views=1, seed=3)
    paths = sorted(str(p) for p in (tmp_path / "images").rglob("*.jpg"))[-24:]  # the 6 test classes
    rec = RecPredictor(DEMO_REC, cpu_threads=2)
    side = rec.preprocess.decode_side
    assert read_image(paths[0], min_side=side).shape[0] < 640  # reduced, or this test proves nothing
    full = rec.predict([read_image(p) for p in paths])
    reduced = rec.predict([read_image(p, min_side=side) for p in paths])
    cos = np.sum(full * reduced, axis=1)
    assert cos.min() > 0.95, cos
    labels = np.array([os.path.basename(os.path.dirname(p)) for p in paths])

    def hits(f):
        sim = f @ f.T
        np.fill_diagonal(sim, -np.inf)
        return int((labels[sim.argmax(axis=1)] == labels).sum())
    assert hits(full) >= 12  # the model recognises these classes at all
    assert hits(reduced) >= hits(full) - 1


def test_a_gallery_build_with_a_detector_decodes_in_full(tmp_path, monkeypatch):
    from ppshitu import embedder
    from ppshitu.embedder import Embedder

    seen = []
    real = embedder.read_image
    monkeypatch.setattr(embedder, "read_image", lambda p, mp=None, side=None: seen.append(side) or real(p, mp, side))

    class Rec:
        embedding_size = 4
        preprocess = RecPreprocess([32, 32])

        def predict_batch(self, batch):
            return np.ones((len(batch), 4), np.float32) / 2

    class Det:
        def predict(self, rgb):
            return np.zeros((0, 6), np.float32)

    path = _jpeg(tmp_path / "a.jpg", 256, 256)
    Embedder(Rec(), None).embed_files([path])
    Embedder(Rec(), Det()).embed_files([path])
    Embedder(Rec(), None, reduced_decode=False).embed_files([path])
    assert seen == [32, None, None]
