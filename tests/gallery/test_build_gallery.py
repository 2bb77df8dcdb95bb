"""The gallery-building pipeline over image files: new, append (skips present images
without decoding them again), remove by path or label, unreadable images, detector crops.

The model here is PixelEmbedder, a deterministic numpy stand-in with RecPredictor's
interface, so these tests exercise the pipeline in seconds; test_build_gallery_tool.py
runs the real tool with a real exported Paddle model."""
import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from ppshitu.config import load_config
from dataset.synthetic import make_recognition_set
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery, GalleryError
from ppshitu.gallery.builder import build_gallery, read_data_file
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.image import read_image

SIDE = 12
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "inference" / "build_gallery.yaml"


class PixelEmbedder:
    """RecPredictor's interface; the embedding is the centred, normalized thumbnail."""
    embedding_size = 3 * SIDE * SIDE

    def __init__(self, fingerprint="pixels-v1"):
        self.fingerprint = fingerprint
        self.preprocessed = 0
        self._count = threading.Lock()

    def preprocess(self, rgb):
        with self._count:
            self.preprocessed += 1
        small = cv2.resize(rgb, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        return (small.astype(np.float32) / 255.0).transpose(2, 0, 1)

    def predict_batch(self, nchw):
        v = nchw.reshape(len(nchw), -1)
        v = v - v.mean(axis=1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed(self, path):
        return self.predict_batch(self.preprocess(read_image(path))[None])


class CentreDetector:
    """DetPredictor's interface: the middle half of the image as the main object."""

    def predict(self, rgb):
        h, w = rgb.shape[:2]
        return np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4, 0.9]], np.float32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    make_recognition_set(root, num_classes=6, views_per_class=3, image_size=32, num_train_classes=2,
                         gallery_views=2, seed=0)
    rows = [line.split("\t") for line in (root / "gallery_list.txt").read_text().splitlines()]
    labels = sorted({lab for _, lab in rows})
    first = [r for r in rows if r[1] in labels[:2]]
    second = [r for r in rows if r[1] not in labels[:2]]
    (root / "first.txt").write_text("".join(f"{p}\t{lab} (v1)\n" for p, lab in first))
    (root / "all.txt").write_text("".join(f"{p}\t{lab} (v1)\n" for p, lab in first + second))
    return root, [(p, lab + " (v1)") for p, lab in first], [(p, lab + " (v1)") for p, lab in second]


def config(root, index_dir, **index_process):
    ip = {"image_root": str(root), "index_dir": str(index_dir), "data_file": str(root / "all.txt"),
          "embedding_size": PixelEmbedder.embedding_size, "index_method": "Flat", "batch_size": 3,
          **index_process}
    return load_config(CONFIG, [f"IndexProcess.{k}={v}" for k, v in ip.items()], INFER_SCHEMA)


def test_new_then_append_recognises_the_new_classes_and_never_duplicates(images, tmp_path):
    root, first, second = images
    rec = PixelEmbedder()
    out = build_gallery(config(root, tmp_path / "g", data_file=root / "first.txt"), rec=rec)
    assert out["added"] == len(first) and out["count"] == len(first) and rec.preprocessed == len(first)
    g = Gallery.open(tmp_path / "g", model_fingerprint=rec.fingerprint)
    queries = np.concatenate([rec.embed(root / p) for p, _ in second])
    assert not {row[0] for row in g.search(queries, 1)[0]} & {lab for _, lab in second}

    rec.preprocessed = 0
    out = build_gallery(config(root, tmp_path / "g", index_operation="append"), rec=rec)
    assert out["added"] == len(second) and out["already_present"] == len(first)
    assert rec.preprocessed == len(second)           # present images were not decoded again
    g.refresh()
    assert [row[0] for row in g.search(queries, 1)[0]] == [lab for _, lab in second]
    assert g.records()[0]["path"] == first[0][0]      # stored relative to image_root

    rec.preprocessed = 0
    again = build_gallery(config(root, tmp_path / "g", index_operation="append"), rec=rec)
    assert again["added"] == 0 and again["count"] == len(first) + len(second) and rec.preprocessed == 0


def test_remove_by_path_and_by_label(images, tmp_path):
    root, first, second = images
    build_gallery(config(root, tmp_path / "g"), rec=PixelEmbedder())
    (root / "drop_one.txt").write_text(f"{second[0][0]}\t{second[0][1]}\n")
    out = build_gallery(config(root, tmp_path / "g", index_operation="remove",
                               data_file=root / "drop_one.txt"), rec=None)
    assert out["removed"] == 1
    (root / "drop_class.txt").write_text(f"{first[0][1]}\n")   # label mode: a line may be just a label
    out = build_gallery(config(root, tmp_path / "g", index_operation="remove", remove_by="label",
                               data_file=root / "drop_class.txt"), rec=None)
    g = Gallery.open(tmp_path / "g")
    assert out["removed"] == 2 and first[0][1] not in g.labels() and len(g) == len(first) + len(second) - 3
    assert build_gallery(config(root, tmp_path / "g", index_operation="compact"))["count"] == len(g)


def test_unreadable_images_are_skipped_and_named(images, tmp_path, caplog):
    root, first, _ = images
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    lines = [f"{root / p}\t{lab}" for p, lab in first] + [f"{tmp_path / 'broken.jpg'}\tbroken",
                                                         f"{tmp_path / 'missing.jpg'}\tmissing"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="ppshitu.gallery"):
        out = build_gallery(config(Path("/"), tmp_path / "g", data_file=tmp_path / "list.txt"), rec=PixelEmbedder())
    assert out["unreadable"] == 2 and out["added"] == len(first)
    assert "broken.jpg" in caplog.text and "missing.jpg" in caplog.text and "2 of 6 images" in caplog.text


def test_detector_crops_are_indexed_with_their_boxes(images, tmp_path):
    root, first, _ = images
    rec = PixelEmbedder()
    build_gallery(config(root, tmp_path / "g", data_file=root / "first.txt"), rec=rec, det=CentreDetector())
    g = Gallery.open(tmp_path / "g")
    assert g.records()[0]["box"] == [8.0, 8.0, 24.0, 24.0]
    crop = read_image(root / first[0][0])[8:24, 8:24]
    _, scores, ids = g.search(rec.predict_batch(rec.preprocess(crop)[None]), 1)
    assert ids[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_bad_lists_and_mismatched_models_are_clear_errors(images, tmp_path):
    root, first, _ = images
    (tmp_path / "bad.txt").write_text(f"{first[0][0]}\t{first[0][1]}\n{first[1][0]} no tab here\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected 'relpath'\\t'label'"):
        read_data_file(tmp_path / "bad.txt", "\t")
    with pytest.raises(ConfigError, match="data_file: .*nope.txt does not exist"):
        build_gallery(config(root, tmp_path / "g", data_file=tmp_path / "nope.txt"), rec=PixelEmbedder())
    with pytest.raises(ConfigError, match="embedding_size is 512 but the model .* makes 432-d"):
        build_gallery(config(root, tmp_path / "g", embedding_size=512), rec=PixelEmbedder())
    with pytest.raises(GalleryError, match="not a gallery"):
        build_gallery(config(root, tmp_path / "g", index_operation="append"), rec=PixelEmbedder())
    build_gallery(config(root, tmp_path / "g", data_file=root / "first.txt"), rec=PixelEmbedder())
    with pytest.raises(GalleryError, match="built with model pixels-v1, not pixels-v2"):
        build_gallery(config(root, tmp_path / "g", index_operation="append"), rec=PixelEmbedder("pixels-v2"))
    assert len(Gallery.open(tmp_path / "g")) == len(first)
