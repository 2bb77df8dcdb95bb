"""Round 4 of the hardening probes: the services of two galleries sharing one --upload-dir.

Before: both stored uploads straight into the folder, and POST /api/compact on one (reclaim_uploads: "delete
the stored uploads no item of MY gallery names") deleted the other's images; removing an item deleted the
file even where the other gallery held the same image (the same bytes are the same path). Now a given
--upload-dir holds one subfolder per gallery (serving.service.service_upload_dir: gallery-<16 hex>, with a
GALLERY file naming the gallery), and each service deletes only in its own.
"""
import hashlib
import os
import time

import numpy as np
import pytest


def _upload(i):
    data = b"\xff\xd8\xff" + bytes([i]) * 50   # named .jpg by its magic number
    return hashlib.sha256(data).hexdigest(), data


def _writer(tmp_path, name, upload_dir):
    from ppshitu.gallery.gallery import Gallery
    from ppshitu.serving.service import GalleryWriter, service_upload_dir

    ip = {"backend": "faiss", "index_dir": str(tmp_path / name), "index_method": "Flat"}
    Gallery.create(ip["index_dir"], 3, index_method="Flat", model_fingerprint="standin").close()
    folder, owner = service_upload_dir(upload_dir, ip)
    return GalleryWriter(ip, folder, "standin", owner)


def _age(paths):
    from ppshitu.serving.service import RECLAIM_GRACE_S
    old = time.time() - RECLAIM_GRACE_S - 10
    for p in paths:
        os.utime(p, (old, old))


def test_two_galleries_sharing_an_upload_dir_never_reclaim_each_others_uploads(tmp_path):
    shared = str(tmp_path / "shared")
    a, b = _writer(tmp_path, "ga", shared), _writer(tmp_path, "gb", shared)
    assert a.upload_dir != b.upload_dir and os.path.dirname(a.upload_dir) == os.path.dirname(b.upload_dir) == shared
    v = np.eye(3, dtype=np.float32)
    _, a_paths, _ = a.add("cat", [_upload(1), _upload(2)], v[:2], [None, None])
    _, b_paths, _ = b.add("dog", [_upload(2), _upload(3)], v[:2], [None, None])  # image 2 in both galleries
    _age(a_paths + b_paths)
    assert a.compact()["reclaimed_uploads"] == 0 and b.compact()["reclaimed_uploads"] == 0
    assert all(os.path.isfile(p) for p in a_paths + b_paths)
    # A drops its cat (a kill -9 before the files went): A's compact reclaims A's two files, never B's
    a.gallery.remove(labels=["cat"])
    assert a.compact()["reclaimed_uploads"] == 2
    assert not any(os.path.exists(p) for p in a_paths) and all(os.path.isfile(p) for p in b_paths)
    # removing B's item of image 2 deletes B's file only; A (which holds image 2 again) keeps its own
    _, a_again, _ = a.add("cat", [_upload(2)], v[:1], [None])
    b.remove_item(next(r["id"] for r in b.gallery.records() if r["path"] == b_paths[0]))
    assert not os.path.exists(b_paths[0]) and os.path.isfile(a_again[0]) and os.path.isfile(b_paths[1])
    for w in (a, b):
        w.gallery.close()


def test_the_subfolder_names_its_gallery_and_a_foreign_one_is_left_alone(tmp_path):
    from ppshitu.serving.service import GALLERY_FILE, gallery_identity, service_upload_dir

    shared = str(tmp_path / "shared")
    a = _writer(tmp_path, "ga", shared)
    _, paths, _ = a.add("cat", [_upload(1)], np.eye(3, dtype=np.float32)[:1], [None])
    owner = os.path.join(a.upload_dir, GALLERY_FILE)
    ip = {"backend": "faiss", "index_dir": str(tmp_path / "ga")}
    assert open(owner).read().strip() == gallery_identity(ip) and str(tmp_path / "ga") in gallery_identity(ip)
    # the same gallery spelled another way (a symbolic link, a trailing slash) is the same subfolder
    os.symlink(tmp_path / "ga", tmp_path / "alias")
    for spelled in (str(tmp_path / "alias"), str(tmp_path / "ga") + "/"):
        assert service_upload_dir(shared, {"backend": "faiss", "index_dir": spelled})[0] == a.upload_dir
    # a GALLERY file naming another gallery (a copied folder): nothing there is reclaimed
    with open(owner, "w") as f:
        f.write('["faiss", "/elsewhere", null]\n')
    a.gallery.remove(labels=["cat"])
    _age(paths)
    assert a.compact()["reclaimed_uploads"] == 0 and os.path.isfile(paths[0])
    a.gallery.close()


def test_the_default_folder_beside_the_gallery_keeps_its_layout(tmp_path):
    from ppshitu.serving.service import default_upload_dir, service_upload_dir

    ip = {"backend": "faiss", "index_dir": str(tmp_path / "g")}
    assert service_upload_dir(None, ip) == (default_upload_dir(ip), None)


def test_a_users_file_under_an_uploads_name_is_never_used_or_replaced(tmp_path):
    from ppshitu.serving.errors import Conflict
    from ppshitu.serving.service import upload_path

    a = _writer(tmp_path, "ga", str(tmp_path / "shared"))
    sha, data = _upload(4)
    path = upload_path(a.upload_dir, sha, data)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"the user's own bytes")
    with pytest.raises(Conflict, match="in the way"):
        a.add("cat", [(sha, data)], np.eye(3, dtype=np.float32)[:1], [None])
    assert open(path, "rb").read() == b"the user's own bytes" and len(a.gallery) == 0
    a.gallery.close()


def test_a_label_named_in_another_spelling_finds_its_class(tmp_path):
    """POST /api/items with label 'cafe\\u0301' (NFD) or 'cat ' stores 'café' / 'cat' (check_label), but
    DELETE /api/labels/cafe%CC%81 (and PATCH, GET /api/items?label=) answered 404 "no class 'café'"."""
    import unicodedata

    from ppshitu.serving.service import held_label

    w = _writer(tmp_path, "g", None)
    v = np.eye(3, dtype=np.float32)
    w.add("café", [_upload(1)], v[:1], [None])
    w.add("cat", [_upload(2)], v[1:2], [None])
    nfd = unicodedata.normalize("NFD", "café")
    assert held_label(nfd, {"café": 1}) == "café" and held_label("x", {"café": 1}) == "x"
    assert w.rename(nfd + " ", "tea")["previous"] == "café"
    assert w.remove_label(" cat ")["label"] == "cat"
    assert w.gallery.label_counts() == {"tea": 1}
    w.gallery.close()
