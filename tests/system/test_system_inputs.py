"""What the recognition system makes of inputs that used to give confident nonsense or
unnamed errors: blank / flat images (reported "unknown"), 1x1 images (refused as too small),
images past the pixel limit, bad return_k / score_thres, and a model whose weights changed
under an old inference.yml (refused against its gallery)."""
import os

import cv2
import numpy as np
import pytest

from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery, GalleryError
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.system import UNKNOWN, RecognitionSystem
from ppshitu.utils.image import ImageTooLargeError, ImageTooSmallError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
EMBED = 16


class DetailRec:
    """Stand-in model whose embedding is the crop's mean colour plus a constant: like a CNN,
    it answers something definite for a blank crop."""
    embedding_size = 4
    fingerprint = None

    def preprocess(self, rgb):
        return np.append(rgb.reshape(-1, 3).mean(0) / 255.0, 0.5).astype(np.float32)[:, None, None]

    def predict_batch(self, batch):
        v = batch.reshape(len(batch), -1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def texture(seed, colour, size=(120, 160)):
    rng = np.random.default_rng(seed)
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, 25, size + (3,)), 0, 255).astype(np.uint8)


@pytest.fixture
def gallery(tmp_path):
    rec = DetailRec()
    black, red = np.zeros((50, 50, 3), np.uint8), texture(0, (200, 30, 30))
    vecs = rec.predict_batch(np.stack([rec.preprocess(black), rec.preprocess(red)]))
    # a (careless) gallery holding a black image, and a red object
    Gallery.create(tmp_path / "g", 4, index_method="Flat", vectors=vecs, labels=["black card", "red box"])
    return Gallery.open(tmp_path / "g")


def test_crops_without_detail_are_unknown(gallery):
    rec = DetailRec()
    strict = RecognitionSystem(rec, gallery, score_thres=0.9, min_crop_std=1.0)
    for blank in (np.zeros((240, 320, 3), np.uint8), np.full((240, 320, 3), 255, np.uint8),
                  np.full((240, 320, 3), (200, 30, 30), np.uint8)):
        (r,) = strict.predict(blank)
        assert r["rec_docs"] == UNKNOWN and r["uniform"] is True and r["nearest_docs"] is not None
    (r,) = strict.predict(np.zeros((240, 320, 3), np.uint8))
    assert r["rec_scores"] > 0.99                     # the score alone would have said "black card"
    (r,) = strict.predict(texture(1, (200, 30, 30)))
    assert r["rec_docs"] == "red box" and r["uniform"] is False
    lax = RecognitionSystem(rec, gallery, score_thres=0.9)   # the constructor's default leaves it off
    assert lax.predict(np.zeros((240, 320, 3), np.uint8))[0]["rec_docs"] == "black card"


def test_too_small_images_are_refused_and_skipped_by_bulk_readers(gallery, tmp_path):
    system = RecognitionSystem(DetailRec(), gallery, score_thres=0.5)
    with pytest.raises(ImageTooSmallError, match="image 0: 1 x 1 pixels is too small"):
        system.predict(np.full((1, 1, 3), 77, np.uint8))
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1, 3), 77, np.uint8))
    cv2.imwrite(str(tmp_path / "ok.png"), texture(2, (200, 30, 30)))
    errors = []
    out = list(system.predict_paths([str(tmp_path / "dot.png"), str(tmp_path / "ok.png")],
                                    on_error=lambda p, e: errors.append((p, type(e)))))
    assert [p for p, _ in out] == [str(tmp_path / "ok.png")]
    assert errors == [(str(tmp_path / "dot.png"), ImageTooSmallError)]


def test_the_pixel_limit_applies_to_the_systems_reads(gallery, tmp_path):
    cv2.imwrite(str(tmp_path / "big.png"), texture(3, (200, 30, 30)))
    system = RecognitionSystem(DetailRec(), gallery, max_image_pixels=120 * 160 - 1)
    errors = []
    assert list(system.predict_paths([str(tmp_path / "big.png")], on_error=lambda p, e: errors.append(e))) == []
    assert isinstance(errors[0], ImageTooLargeError) and "big.png" in str(errors[0])


@pytest.mark.parametrize("kwargs,key", [({"return_k": 0}, "IndexProcess.return_k"),
                                        ({"score_thres": float("nan")}, "IndexProcess.score_thres"),
                                        ({"min_image_side": 0}, "Global.min_image_side"),
                                        ({"max_image_pixels": -5}, "Global.max_image_pixels")])
def test_bad_settings_name_their_key(gallery, kwargs, key):
    with pytest.raises(ConfigError, match=key):
        RecognitionSystem(DetailRec(), gallery, **kwargs)


# ------------------------------------------------------ with a real (tiny) exported model
def export_tiny(model_dir, seed):
    import paddle
    import paddle.nn.functional as F

    from ppshitu.infer.spec import write_spec

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
            self.fc = paddle.nn.Linear(8 * 4 * 4, EMBED)

        def forward(self, x):
            return F.normalize(self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 4).flatten(1)), axis=1)

    paddle.seed(seed)
    model = Tiny()
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, 32, 32], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), os.path.join(model_dir, "inference"))
    return write_spec(str(model_dir), model_type="rec", input_size=[32, 32], interpolation="bilinear",
                      scale=1 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                      embedding_size=EMBED, format="pir")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from dataset.synthetic import make_recognition_set
    from ppshitu.gallery.builder import build_gallery

    root = tmp_path_factory.mktemp("real")
    for name, seed in (("model", 0), ("retrained", 1)):
        (root / name).mkdir()
        export_tiny(root / name, seed)
    make_recognition_set(root / "data", num_classes=4, views_per_class=2, image_size=32, num_train_classes=1,
                         gallery_views=1, seed=0)
    overrides = [f"Global.rec_inference_model_dir={root / 'model'}", "Global.det_inference_model_dir=",
                 f"IndexProcess.index_dir={root / 'g'}", f"IndexProcess.image_root={root / 'data'}",
                 f"IndexProcess.data_file={root / 'data' / 'gallery_list.txt'}", "IndexProcess.index_method=Flat",
                 "Global.cpu_num_threads=1", "Global.enable_mkldnn=False", f"IndexProcess.embedding_size={EMBED}"]
    cfg = load_config(CONFIG, overrides, INFER_SCHEMA)
    summary = build_gallery(cfg)
    assert summary["count"] > 0 and Gallery.open(root / "g").embedding_size == EMBED
    return root, cfg


def test_from_config_reports_blank_images_unknown(real):
    _, cfg = real
    system = RecognitionSystem.from_config(cfg)
    assert system.min_crop_std == 1.0 and system.min_image_side == 8
    for blank in (np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)):
        (r,) = system.predict(blank)
        assert r["rec_docs"] == UNKNOWN and r["uniform"] is True
    with pytest.raises(ImageTooSmallError):
        system.predict(np.zeros((1, 1, 3), np.uint8))


def test_new_weights_under_the_old_inference_yml_are_refused_against_the_gallery(real, tmp_path):
    import copy
    import shutil

    from ppshitu.gallery.builder import build_gallery

    root, cfg = real
    swapped = tmp_path / "model"
    shutil.copytree(root / "model", swapped)
    shutil.copyfile(root / "retrained" / "inference.pdiparams", swapped / "inference.pdiparams")  # yml kept
    cfg = copy.deepcopy(cfg)
    cfg.Global.rec_inference_model_dir = str(swapped)
    rows = (root / "data" / "test_list.txt").read_text().splitlines()
    (tmp_path / "more.txt").write_text("".join(f"{r.split(' ')[0]}\tmore {r.split(' ')[1]}\n" for r in rows))
    cfg.IndexProcess.data_file = str(tmp_path / "more.txt")
    with pytest.raises(GalleryError, match="built with model .* not comparable"):
        RecognitionSystem.from_config(cfg)
    cfg.IndexProcess.index_operation = "append"
    with pytest.raises(GalleryError, match="built with model"):
        build_gallery(cfg)
