"""Hardening round 3 (issue 23), classes 5 and 8: list files and gallery keys.

5. One image is one gallery key, however its path is spelt in a list (`images/a.jpg`, `./images/a.jpg`,
   `images//a.jpg`, an absolute path inside image_root): for new, append and remove, on FAISS and Milvus,
   and in galleries whose keys were stored un-normalised; one path listed with two labels is an error
   naming the path, both labels and their lines; paths outside image_root need
   IndexProcess.allow_outside_root.
8. Small inconsistencies: a UTF-8 BOM in any list file; remove-by-label takes one label per whole line
   (a tab is part of the label); one set of accepted image extensions (GIF included); PaddleClas's
   shipped inference configs (and the `labe_list` misspelling of its older ones) load unchanged; names
   with control characters are escaped in one-line-per-file output.
"""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery
from ppshitu.gallery.builder import build_gallery
from ppshitu.schemas import INFER_SCHEMA

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "inference" / "build_gallery.yaml"
SIDE = 8


class TinyEmbedder:
    """RecPredictor's interface: the centred, normalised 8x8 thumbnail."""
    embedding_size = 3 * SIDE * SIDE
    fingerprint = "tiny-v1"

    def preprocess(self, rgb):
        small = cv2.resize(rgb, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        return (small.astype(np.float32) / 255.0).transpose(2, 0, 1)

    def predict_batch(self, nchw):
        v = nchw.reshape(len(nchw), -1)
        v = v - v.mean(axis=1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _image(path, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    if ext == ".gif":
        from PIL import Image
        Image.fromarray(img).save(path, "GIF")
    else:
        cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for i, name in enumerate(("images/a.jpg", "images/b.jpg", "images/c.jpg")):
        _image(r / name, i)
    _image(tmp_path / "outside.jpg", 7)
    return r


def cfg(root, index_dir, **ip):
    ip = {"image_root": str(root), "index_dir": str(index_dir), "index_method": "Flat", "batch_size": 4, **ip}
    return load_config(CONFIG, [f"IndexProcess.{k}={v}" for k, v in ip.items()], INFER_SCHEMA)


def _write(path, text, bom=False):
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _paths(index):
    return sorted(r["path"] for r in Gallery.open(index).records())


# ------------------------------------------------------------------ 5. path spelling
def test_path_spellings_are_one_gallery_item_for_new_append_and_remove(root, tmp_path):
    lst = _write(tmp_path / "g.txt", "images/a.jpg\tcat\n./images/a.jpg\tcat\nimages//a.jpg\tcat\n"
                                     f"{root / 'images' / 'b.jpg'}\tdog\nimages/./b.jpg\tdog\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=lst), rec=TinyEmbedder())
    assert out["count"] == 2
    assert _paths(tmp_path / "g") == ["images/a.jpg", "images/b.jpg"]   # the key: normalised, relative

    more = _write(tmp_path / "more.txt", "./images/a.jpg\tcat\nimages/c.jpg\tbird\nimages//c.jpg\tbird\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=more, index_operation="append"), rec=TinyEmbedder())
    assert (out["added"], out["already_present"], out["count"]) == (1, 1, 3)

    drop = _write(tmp_path / "drop.txt", "images//a.jpg\tcat\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=drop, index_operation="remove"))
    assert out["removed"] == 1 and _paths(tmp_path / "g") == ["images/b.jpg", "images/c.jpg"]


def test_one_path_with_two_labels_is_an_error_naming_both(root, tmp_path):
    lst = _write(tmp_path / "g.txt", "images/a.jpg\tcat\nimages/b.jpg\tdog\n./images/a.jpg\tkitten\n")
    with pytest.raises(ConfigError) as e:
        build_gallery(cfg(root, tmp_path / "g", data_file=lst), rec=TinyEmbedder())
    msg = str(e.value)
    assert "images/a.jpg" in msg and "'cat'" in msg and "'kitten'" in msg and ":1" in msg and ":3" in msg
    assert not (tmp_path / "g").exists()


def test_paths_outside_image_root_need_allow_outside_root(root, tmp_path):
    for spelling in ("../outside.jpg", str(tmp_path / "outside.jpg"), "images/../../outside.jpg"):
        lst = _write(tmp_path / "g.txt", f"images/a.jpg\tcat\n{spelling}\tout\n")
        with pytest.raises(ConfigError, match=r"outside IndexProcess.image_root.*allow_outside_root"):
            build_gallery(cfg(root, tmp_path / "g", data_file=lst), rec=TinyEmbedder())
        assert not (tmp_path / "g").exists()
    out = build_gallery(cfg(root, tmp_path / "g", data_file=lst, allow_outside_root=True), rec=TinyEmbedder())
    assert out["added"] == 2 and out["unreadable"] == 0
    assert INFER_SCHEMA["IndexProcess"]["allow_outside_root"].doc


def test_galleries_with_unnormalised_keys_keep_working(root, tmp_path):
    """A gallery written before normalisation holds './images/a.jpg' and 'images//b.jpg' as keys."""
    rec = TinyEmbedder()
    from ppshitu.utils.image import read_image
    vecs = np.concatenate([rec.predict_batch(rec.preprocess(read_image(root / p))[None])
                           for p in ("images/a.jpg", "images/b.jpg")])
    Gallery.create(tmp_path / "g", rec.embedding_size, index_method="Flat", model_fingerprint=rec.fingerprint,
                   vectors=vecs, labels=["cat", "dog"], paths=["./images/a.jpg", "images//b.jpg"])
    lst = _write(tmp_path / "more.txt", "images/a.jpg\tcat\nimages/b.jpg\tdog\nimages/c.jpg\tbird\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=lst, index_operation="append"), rec=rec)
    assert (out["added"], out["already_present"], out["count"]) == (1, 2, 3)
    drop = _write(tmp_path / "drop.txt", "images/b.jpg\tdog\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=drop, index_operation="remove"))
    assert out["removed"] == 1 and _paths(tmp_path / "g") == ["./images/a.jpg", "images/c.jpg"]


def test_milvus_gets_the_same_normalised_keys(root, tmp_path, monkeypatch):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from ppshitu.gallery.base import open_gallery, path_hash
    from ppshitu.gallery.milvus_store import MilvusStore

    opened, real_init = [], MilvusStore.__init__

    def tracking_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)
    monkeypatch.setattr(MilvusStore, "__init__", tracking_init)
    lst = _write(tmp_path / "g.txt", "images/a.jpg\tcat\n./images/a.jpg\tcat\nimages//b.jpg\tdog\n")
    milvus = {"backend": "milvus", "uri": str(tmp_path / "g.db"), "collection": "paths"}
    c = cfg(root, tmp_path / "unused", data_file=lst, **milvus)
    try:
        assert build_gallery(c, rec=TinyEmbedder())["count"] == 2
        recs = open_gallery(c["IndexProcess"]).records()
        assert sorted(r["path"] for r in recs) == ["images/a.jpg", "images/b.jpg"]
        assert {r["id"] for r in recs} == {path_hash("images/a.jpg"), path_hash("images/b.jpg")}
        drop = _write(tmp_path / "drop.txt", "./images/b.jpg\tdog\n")
        out = build_gallery(cfg(root, tmp_path / "unused", data_file=drop, index_operation="remove", **milvus))
        assert out["removed"] == 1 and out["count"] == 1
    finally:
        for g in opened:
            g.close()


def test_list_images_normalises_paths(tmp_path):
    from ppshitu.utils.image import list_images

    _image(tmp_path / "images" / "a.jpg", 0)
    _write(tmp_path / "list.txt", "./images/a.jpg\nimages//a.jpg\n")
    assert list_images(tmp_path / "list.txt") == [str(tmp_path / "images" / "a.jpg")] * 2


# ------------------------------------------------------------------ 8. small inconsistencies
def test_a_bom_does_not_hide_the_first_image_of_any_list(root, tmp_path):
    from ppshitu.rec.data.dataset import read_list_file
    from ppshitu.utils.image import list_images

    lst = _write(tmp_path / "g.txt", "images/a.jpg\tcat\nimages/b.jpg\tdog\n", bom=True)
    out = build_gallery(cfg(root, tmp_path / "g", data_file=lst), rec=TinyEmbedder())
    assert (out["added"], out["unreadable"]) == (2, 0) and _paths(tmp_path / "g") == ["images/a.jpg", "images/b.jpg"]
    drop = _write(tmp_path / "drop.txt", "cat\n", bom=True)
    out = build_gallery(cfg(root, tmp_path / "g", data_file=drop, index_operation="remove", remove_by="label"))
    assert out["removed"] == 1
    assert list_images(_write(root / "q.txt", "images/a.jpg\n", bom=True)) == [str(root / "images" / "a.jpg")]
    rows = read_list_file(_write(tmp_path / "train.txt", "images/a.jpg 0\nimages/b.jpg 1\n", bom=True))
    assert rows[0] == ("images/a.jpg", 0, None)


def test_remove_by_label_takes_the_whole_line_as_the_label(root, tmp_path, caplog):
    lst = _write(tmp_path / "g.txt", "images/a.jpg\tred\tapple\nimages/b.jpg\tapple\nimages/c.jpg\tred\n")
    build_gallery(cfg(root, tmp_path / "g", data_file=lst), rec=TinyEmbedder())
    assert sorted(Gallery.open(tmp_path / "g").labels()) == ["apple", "red", "red\tapple"]
    drop = _write(tmp_path / "drop.txt", "red\tapple\n")
    out = build_gallery(cfg(root, tmp_path / "g", data_file=drop, index_operation="remove", remove_by="label"))
    assert out["removed"] == 1 and sorted(Gallery.open(tmp_path / "g").labels()) == ["apple", "red"]
    # a label the gallery does not hold is reported, not passed over in silence
    out = build_gallery(cfg(root, tmp_path / "g", data_file=drop, index_operation="remove", remove_by="label"))
    assert out["removed"] == 0 and out["labels_not_found"] == 1
    assert "red\\tapple" in caplog.text


def test_one_set_of_image_extensions_gif_included(tmp_path, caplog):
    from ppshitu.utils.image import IMAGE_EXTENSIONS, list_images, read_image

    assert ".gif" in IMAGE_EXTENSIONS
    gif = _image(tmp_path / "pics" / "anim.GIF", 3)
    _image(tmp_path / "pics" / "b.png", 4)
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    assert read_image(gif).shape == (32, 32, 3)
    assert list_images(tmp_path / "pics") == sorted([str(gif), str(tmp_path / "pics" / "b.png")])
    assert "1 of 3 files skipped" in caplog.text                     # what is left out is counted


def _paddleclas_configs():
    spec = importlib.util.find_spec("paddleclas")
    if spec is None or not spec.submodule_search_locations:
        return []
    d = Path(list(spec.submodule_search_locations)[0]) / "deploy" / "configs"
    # PP-ShiTu's configs (detection, recognition, the whole system); PULC/cls configs are classification
    return sorted(p for p in d.glob("inference_*.yaml")
                  if {"IndexProcess", "RecPreProcess", "DetPreProcess"} & set(yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("path", _paddleclas_configs() or [pytest.param(None, marks=pytest.mark.skip("no paddleclas"))],
                         ids=lambda p: p.name if p else "none")
def test_paddleclas_shipped_inference_configs_load_unchanged(path):
    if path.name == "inference_general_binary.yaml":   # binary (hamming) indexes: refused, saying so
        with pytest.raises(ConfigError, match="dist_type"):
            load_config(path, schema=INFER_SCHEMA)
        return
    load_config(path, schema=INFER_SCHEMA)


def test_paddleclas_labe_list_misspelling_loads(tmp_path):
    """PaddleClas's older deploy/configs/inference_general.yaml spells Global.label_list `labe_list`."""
    src = (_paddleclas_configs() or [Path(__file__).resolve().parents[2] / "configs" / "inference"
                                     / "inference_general.yaml"])[0].parent / "inference_general.yaml"
    if not src.exists():
        src = Path(__file__).resolve().parents[2] / "configs" / "inference" / "inference_general.yaml"
    data = yaml.safe_load(src.read_text())
    data["Global"].pop("label_list", None)
    data["Global"]["labe_list"] = ["foreground"]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data))
    c = load_config(tmp_path / "old.yaml", schema=INFER_SCHEMA)
    assert c.Global.label_list == ["foreground"]
    assert "label_list" in INFER_SCHEMA["Global"]["labe_list"].doc


def test_names_with_control_characters_print_on_one_line():
    from ppshitu.utils.text import printable

    assert printable("class_0001/000.jpg") == "class_0001/000.jpg"
    assert printable("IMG 0001 été.jpg") == "IMG 0001 été.jpg"
    for name in ("a\nb.jpg", "a\rb.jpg", "tab\there.jpg", "x\x1b[31m.jpg", "u\u2028v.jpg", "bad\udcff.jpg"):
        shown = printable(name)
        assert shown.isprintable() and "\n" not in shown and "\t" not in shown
        shown.encode("utf-8")                                        # a surrogate-escaped name prints
    assert printable("a\nb.jpg") != printable("a\\nb.jpg")           # never two names shown alike
    assert printable("'quoted'.jpg") != "'quoted'.jpg"
