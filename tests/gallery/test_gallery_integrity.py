"""A gallery never opens damage as valid data, and never mixes two models' vectors.

- every file of a version is checksummed: a damaged or hand-edited file is refused, naming it;
- galleries written before checksums (format_version 1) still open;
- a `new` refused in a non-empty directory leaves nothing behind (no LOCK file);
- the model check is made again under the writer lock (a racing `new` with another model);
- the model's fingerprint is the weights' own hash, not inference.yml's copy;
- the embedding size comes from the model unless the config sets a different one."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from dataset.synthetic import make_recognition_set
from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery, GalleryError
from ppshitu.gallery import gallery as gallery_module
from ppshitu.gallery.builder import build_gallery
from ppshitu.infer.spec import fingerprint
from ppshitu.schemas import INFER_SCHEMA

DIM = 8
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "inference", "build_gallery.yaml")
VERSION_FILES = ["index.faiss", "vectors.npy", "ids.npy", "meta.sqlite", "manifest.json"]


def vectors(n, seed):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture
def two_versions(tmp_path):
    """A gallery with an older version (10 items) and a current one (15 items)."""
    g = Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", model_fingerprint="model-a",
                       vectors=vectors(10, 0), labels=[f"c{i % 3}" for i in range(10)],
                       paths=[f"{i}.jpg" for i in range(10)])
    old = g.version
    g.add(vectors(5, 1), ["new"] * 5, [f"n{i}.jpg" for i in range(5)], model_fingerprint="model-a")
    return tmp_path / "g", old, g.version


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":
        mid = len(data) // 2
        data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[:len(data) // 3]))
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("name", VERSION_FILES)
def test_each_damaged_file_is_refused_naming_it(two_versions, name, how):
    root, _, current = two_versions
    damage(root / "versions" / current / name, how)
    with pytest.raises(GalleryError) as e:
        Gallery.open(root)
    assert f"{current}/{name}" in str(e.value) and "damaged" in str(e.value)


def test_damaged_current_is_named_or_points_at_intact_content(two_versions):
    root, old, current = two_versions
    for garbage in (b"\xff\xfe\x00garbage", b"", b"v00000x\n"):
        (root / "CURRENT").write_bytes(garbage)
        with pytest.raises(GalleryError, match="CURRENT"):
            Gallery.open(root)
    (root / "CURRENT").write_text("v000099\n")
    with pytest.raises(GalleryError, match=r"CURRENT names version v000099, but .* does not exist"):
        Gallery.open(root)
    (root / "CURRENT").write_text(old + "\n")  # a digit flipped onto the kept older version: its content
    assert len(Gallery.open(root)) == 10
    (root / "CURRENT").unlink()
    with pytest.raises(GalleryError, match="not a gallery, CURRENT is missing"):
        Gallery.open(root)


def test_an_edited_dist_type_is_refused_not_read_as_l2(two_versions):
    root, _, current = two_versions
    path = root / "versions" / current / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["dist_type"] == "IP" and manifest["format_version"] == 2
    manifest["dist_type"] = "L2"                          # still valid JSON, still a valid value
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(GalleryError, match=rf"{current}/manifest.json: damaged .*manifest_sha256"):
        Gallery.open(root)
    del manifest["checksums"], manifest["manifest_sha256"]  # stripping the checksums is no way round
    path.write_text(json.dumps(manifest))
    with pytest.raises(GalleryError, match="manifest.json: damaged"):
        Gallery.open(root)


def test_overwritten_vectors_are_refused_and_compact_never_rebuilds_from_them(two_versions):
    root, _, current = two_versions
    g = Gallery.open(root)
    path = root / "versions" / current / "vectors.npy"
    data = bytearray(path.read_bytes())
    data[-4 * DIM:] = b"\xff" * (4 * DIM)                 # the last row becomes NaN
    path.write_bytes(bytes(data))
    assert np.isnan(np.load(path)).any()                   # the file itself still loads
    with pytest.raises(GalleryError, match=rf"{current}/vectors.npy: damaged"):
        Gallery.open(root)
    with pytest.raises(GalleryError, match=rf"{current}/vectors.npy: damaged"):
        g.compact()                                         # an open gallery checks under the lock too
    assert (root / "CURRENT").read_text().strip() == current


def test_a_gallery_written_before_checksums_still_opens_and_its_next_version_is_checked(two_versions):
    root, _, current = two_versions
    path = root / "versions" / current / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("checksums", "manifest_sha256"):
        del manifest[key]
    manifest["format_version"] = 1                          # as format 1 wrote it
    path.write_text(json.dumps(manifest))
    g = Gallery.open(root)
    assert len(g) == 15 and g.manifest["format_version"] == 1
    g.add(vectors(1, 5), ["one more"])
    reopened = Gallery.open(root)
    assert reopened.manifest["format_version"] == gallery_module.FORMAT_VERSION == 2
    assert sorted(reopened.manifest["checksums"]) == sorted(set(VERSION_FILES) - {"manifest.json"})


def test_a_refused_new_leaves_the_directory_as_it_was(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(GalleryError, match="not empty and not a gallery"):
        Gallery.create(tmp_path / "photos", DIM, vectors=vectors(2, 0), labels=["a", "b"])
    assert os.listdir(tmp_path / "photos") == ["holiday.jpg"]   # no LOCK, no versions/
    (tmp_path / "afile").write_text("x")
    with pytest.raises(GalleryError, match="a file, not a directory"):
        Gallery.create(tmp_path / "afile", DIM)
    assert not (tmp_path / "nowhere").exists()
    Gallery.create(tmp_path / "nowhere", DIM)                   # a new directory is still made


def test_the_model_is_checked_again_under_the_lock(tmp_path):
    """append with model A opened the gallery; a `new` with model B replaced it meanwhile."""
    appender = Gallery.create(tmp_path / "g", DIM, model_fingerprint="model-a", vectors=vectors(4, 0),
                              labels=["a"] * 4)
    Gallery.create(tmp_path / "g", DIM, model_fingerprint="model-b", overwrite=True, vectors=vectors(3, 1),
                   labels=["b"] * 3)
    with pytest.raises(GalleryError, match="built with model model-b, not model-a"):
        appender.add(vectors(2, 2), ["from a"] * 2, model_fingerprint="model-a")
    g = Gallery.open(tmp_path / "g")
    assert g.model_fingerprint == "model-b" and g.labels() == ["b"] and len(g) == 3


# ---------------------------------------------------------------- building from images
class StandInRec:
    """RecPredictor's interface over a real model directory's weights file (its embedding is
    the image's thumbnail); `fingerprint` is what the directory's inference.yml records."""
    embedding_size = 48

    def __init__(self, model_dir, yml_fingerprint, during_embed=None):
        self.model_dir, self.fingerprint, self.during_embed = str(model_dir), yml_fingerprint, during_embed
        self.spec = {"fingerprint": yml_fingerprint}

    def preprocess(self, rgb):
        return (cv2.resize(rgb, (4, 4), interpolation=cv2.INTER_AREA).astype(np.float32) / 255).transpose(2, 0, 1)

    def predict_batch(self, nchw):
        if self.during_embed:
            self.during_embed()
            self.during_embed = None
        v = nchw.reshape(len(nchw), -1)
        return v - v.mean(axis=1, keepdims=True)


@pytest.fixture
def model_and_images(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "inference.json").write_text("{}")
    (model / "inference.pdiparams").write_bytes(b"weights, version 1" * 1000)
    make_recognition_set(tmp_path / "data", num_classes=4, views_per_class=2, image_size=32, num_train_classes=1,
                         gallery_views=1, seed=0)
    return model, tmp_path / "data"


def cfg(data, index_dir, **ip):
    ip = {"image_root": str(data), "index_dir": str(index_dir), "data_file": str(data / "gallery_list.txt"),
          "index_method": "Flat", "embedding_size": StandInRec.embedding_size, **ip}
    return load_config(CONFIG, [f"IndexProcess.{k}={v}" for k, v in ip.items()], INFER_SCHEMA)


def test_new_weights_under_an_old_inference_yml_are_another_model(model_and_images, tmp_path):
    model, data = model_and_images
    first = fingerprint(model / "inference.pdiparams")
    build_gallery(cfg(data, tmp_path / "g"), rec=StandInRec(model, first))
    assert Gallery.open(tmp_path / "g").model_fingerprint == first
    (model / "inference.pdiparams").write_bytes(b"weights, version 2" * 1000)   # inference.yml left as it was
    with pytest.raises(GalleryError, match=f"built with model {first}, not {fingerprint(model / 'inference.pdiparams')}"):
        build_gallery(cfg(data, tmp_path / "g", index_operation="append"), rec=StandInRec(model, first))


def test_a_racing_new_with_another_model_fails_the_append(model_and_images, tmp_path):
    model, data = model_and_images
    rec_a = StandInRec(model, fingerprint(model / "inference.pdiparams"))
    build_gallery(cfg(data, tmp_path / "g", data_file=data / "gallery_list.txt"), rec=rec_a)
    before = len(Gallery.open(tmp_path / "g"))

    def other_model_rebuilds():  # while the append embeds its images
        Gallery.create(tmp_path / "g", StandInRec.embedding_size, index_method="Flat", model_fingerprint="model-b",
                       overwrite=True, vectors=np.ones((1, StandInRec.embedding_size), np.float32), labels=["b"])
    rows = (data / "test_list.txt").read_text().splitlines()
    (data / "more.txt").write_text("".join(f"{r.split(' ')[0]}\tmore {r.split(' ')[1]}\n" for r in rows))
    racing = StandInRec(model, rec_a.fingerprint, during_embed=other_model_rebuilds)
    with pytest.raises(GalleryError, match=f"built with model model-b, not {rec_a.fingerprint}"):
        build_gallery(cfg(data, tmp_path / "g", index_operation="append", data_file=data / "more.txt"), rec=racing)
    g = Gallery.open(tmp_path / "g")
    assert g.model_fingerprint == "model-b" and g.labels() == ["b"] and before > 1


def test_the_embedding_size_comes_from_the_model(model_and_images, tmp_path):
    model, data = model_and_images
    rec = StandInRec(model, None)
    out = build_gallery(cfg(data, tmp_path / "g", embedding_size="null"), rec=rec)  # as the shipped config
    assert out["count"] > 0 and Gallery.open(tmp_path / "g").embedding_size == 48
    build_gallery(cfg(data, tmp_path / "h", embedding_size=48), rec=rec)   # agreeing: fine
    with pytest.raises(ConfigError, match="IndexProcess.embedding_size is 512 but the model .* makes 48-d"):
        build_gallery(cfg(data, tmp_path / "i", embedding_size=512), rec=rec)
    assert not (tmp_path / "i").exists()


def test_blank_and_tiny_gallery_images_are_skipped_and_named(model_and_images, tmp_path, caplog):
    model, data = model_and_images
    cv2.imwrite(str(data / "black.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(data / "dot.png"), np.full((1, 1, 3), 90, np.uint8))
    lines = (data / "gallery_list.txt").read_text()
    (data / "with_bad.txt").write_text(lines + "black.png\tblack\ndot.png\tdot\n")
    out = build_gallery(cfg(data, tmp_path / "g", data_file=data / "with_bad.txt"), rec=StandInRec(model, None))
    assert out["unreadable"] == 2 and "black" not in Gallery.open(tmp_path / "g").labels()
    assert "black.png" in caplog.text and "no detail" in caplog.text
    assert "dot.png" in caplog.text and "too small" in caplog.text


def test_a_copied_gallery_is_still_intact(two_versions, tmp_path):
    root, _, current = two_versions
    shutil.copytree(root, tmp_path / "copy")
    assert len(Gallery.open(tmp_path / "copy")) == 15       # checksums are of content, not of paths


def test_build_gallery_new_refuses_a_non_gallery_folder_before_embedding(model_and_images, tmp_path):
    model, data = model_and_images
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")

    def embedding_started():
        raise AssertionError("images were embedded for a gallery that cannot be written")
    with pytest.raises(GalleryError, match="not empty and not a gallery"):
        build_gallery(cfg(data, tmp_path / "photos"), rec=StandInRec(model, None, during_embed=embedding_started))
    assert os.listdir(tmp_path / "photos") == ["holiday.jpg"]
