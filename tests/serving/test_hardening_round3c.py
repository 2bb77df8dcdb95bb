"""Hardening round 3c.

1. DATA LOSS: a gallery built from the user's own photos (root4/{cats,dogs}/NNN.jpg, image_root ./) served
   with --upload-dir . from that folder: DELETE /api/labels/dog and DELETE /api/items/<id> deleted the
   user's photos from disk (_forget_files only checked that a path's grandparent was the upload folder,
   resolving relative paths against the server's cwd). Now the service deletes only a file it stored
   itself (serving.service.is_stored_upload, shared with reclaim_uploads): <upload dir>/<2 hex>/<sha256><ext>,
   no symbolic link out, a regular file whose content's sha256 is its name.
2. Labels holding Unicode format characters (zero-width space U+200B, bidi override U+202E, ...) are
   refused like control characters, by the service (check_label) and in gallery lists (builder).
"""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest


def _png(i):
    import cv2
    img = np.zeros((24, 24, 3), np.uint8)
    img[:] = (30 + 9 * i, 180 - 7 * i, 60 + 3 * i)
    return cv2.imencode(".png", img)[1].tobytes()


def _serve(tmp_path, upload_dir):
    from ppshitu.gallery import Gallery
    from ppshitu.serving import Service, Settings, serve_in_thread
    from ppshitu.system import RecognitionSystem
    from serving_helpers import ThreadBoundRec

    service = Service(lambda: RecognitionSystem(ThreadBoundRec(), Gallery.open(tmp_path / "g"), None),
                      tmp_path / "g", Settings(host="127.0.0.1", port=0, token="t", upload_dir=upload_dir)).start()
    url, stop = serve_in_thread(service)
    return url, lambda: (stop(), service.stop())


@pytest.mark.parametrize("upload_dir", [".", "root3/images"])
def test_delete_never_removes_the_users_own_photos(tmp_path, monkeypatch, upload_dir):
    """The probe: user photos named by a built gallery (relative to image_root ./, also given absolute),
    one of them named like an upload but with other content, and one link named like an upload to a photo
    outside: DELETE label / DELETE item leave them all on disk; the service's own uploads still go."""
    import httpx

    from ppshitu.gallery import Gallery
    monkeypatch.chdir(tmp_path)
    up = tmp_path / upload_dir
    photos = {}
    for label, folder in (("cat", "root4/cats"), ("dog", "root4/dogs"), ("bird", "root3/images/birds")):
        for n in range(2):
            p = Path(folder) / f"{n:03d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\xff\xd8\xff user photo " + f"{label}{n}".encode())
            photos[str(p)] = label
    lookalike = up / "ab" / ("ab" + "0" * 62 + ".jpg")       # upload-like name, other content
    lookalike.parent.mkdir(parents=True, exist_ok=True)
    lookalike.write_bytes(b"\xff\xd8\xff mine")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"\xff\xd8\xff outside")
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    link = up / sha[:2] / (sha + ".jpg")                     # a link named like an upload, right hash
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)
    absolute = str((tmp_path / "root4/cats/001.jpg").resolve())
    paths = list(photos) + [absolute, str(lookalike), str(link)]
    labels = list(photos.values()) + ["cat2", "mole", "mole"]
    g = Gallery.create(tmp_path / "g", 3, index_method="Flat", model_fingerprint="standin")
    rng = np.random.default_rng(0)
    g.add(rng.random((len(paths), 3)).astype(np.float32), labels, paths)
    g.close()
    before = {p: Path(p).read_bytes() for p in paths if not os.path.islink(p)}

    url, stop = _serve(tmp_path, upload_dir)
    auth = {"Authorization": "Bearer t"}
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            for label in ("dog", "bird", "cat2", "mole"):
                r = c.delete(f"/api/labels/{label}", headers=auth)
                assert r.status_code == 200, r.text
            for item in c.get("/api/items?label=cat").json()["items"]:
                assert c.delete(f"/api/items/{item['id']}", headers=auth).status_code == 200
            assert c.get("/api/labels").json()["count"] == 0
            for p, data in before.items():
                assert Path(p).read_bytes() == data, f"{p} was deleted or changed"
            assert link.is_symlink() and outside.is_file()

            # the service's own uploads: removed with their item / class, as before
            r = c.post("/api/items", data={"label": "olive"}, headers=auth,
                       files=[("images", (f"{i}.png", _png(i), "image/png")) for i in range(3)])
            assert r.status_code == 201, r.text
            from ppshitu.serving.service import service_upload_dir  # (a given folder: the gallery's subfolder)
            own = Path(service_upload_dir(upload_dir, {"backend": "faiss", "index_dir": str(tmp_path / "g")})[0])
            stored = [own / h[:2] / (h + ".png") for h in (hashlib.sha256(_png(i)).hexdigest() for i in range(3))]
            assert all(p.is_file() for p in stored)
            first = c.get("/api/items?label=olive").json()["items"][0]["id"]
            assert c.delete(f"/api/items/{first}", headers=auth).status_code == 200
            assert sum(p.is_file() for p in stored) == 2
            assert c.delete("/api/labels/olive", headers=auth).status_code == 200
            assert not any(p.exists() for p in stored)
            for p, data in before.items():
                assert Path(p).read_bytes() == data
    finally:
        stop()


def test_is_stored_upload_is_the_one_rule(tmp_path):
    from ppshitu.serving.service import is_stored_upload, upload_path
    data = b"\xff\xd8\xff" + b"z" * 40
    h = hashlib.sha256(data).hexdigest()
    p = upload_path(tmp_path, h, data)
    Path(p).parent.mkdir(parents=True)
    Path(p).write_bytes(data)
    assert is_stored_upload(str(tmp_path), p)
    assert not is_stored_upload(str(tmp_path), os.path.relpath(p))           # relative: never
    assert not is_stored_upload(str(tmp_path / "x"), p)                      # another folder
    assert not is_stored_upload(str(tmp_path), str(tmp_path / "x" / ".." / h[:2] / os.path.basename(p)))
    deeper = tmp_path / "sub" / h[:2] / os.path.basename(p)                 # one folder too deep
    deeper.parent.mkdir(parents=True)
    deeper.write_bytes(data)
    assert not is_stored_upload(str(tmp_path), str(deeper))
    Path(p).write_bytes(data + b"changed")                                   # content no longer its name
    assert not is_stored_upload(str(tmp_path), p)


# ------------------------------------------------------------------ 2. format characters in labels
BAD_LABELS = ["zero\u200bwidth", "\u202eevil", "bom\ufeff", "soft\u00adhyphen", "c1\x85x", "tab\tbed", "l\u2028s"]


@pytest.mark.parametrize("label", BAD_LABELS)
def test_check_label_refuses_format_and_control_characters(label):
    from ppshitu.serving.errors import ServiceError
    from ppshitu.serving.service import check_label
    with pytest.raises(ServiceError, match="characters"):
        check_label(label)


@pytest.mark.parametrize("label", ["\u0301\u0301", "\u0301 \u0308"])
def test_check_label_refuses_a_label_of_combining_marks_only(label):
    from ppshitu.serving.errors import ServiceError
    from ppshitu.serving.service import check_label
    with pytest.raises(ServiceError, match="visible character"):
        check_label(label)


def test_check_label_keeps_ordinary_unicode():
    from ppshitu.serving.service import check_label
    assert check_label(" caf\u00e9 \u732b ") == "caf\u00e9 \u732b"


@pytest.mark.parametrize("label", ["zero\u200bwidth", "\u202eevil", "soft\u00adhyphen", "c1\x85x"])
def test_gallery_list_refuses_format_characters_in_labels(tmp_path, label):
    from ppshitu.errors import ConfigError
    from ppshitu.gallery.builder import read_data_file
    f = tmp_path / "list.txt"
    f.write_text(f"a.jpg\tcat\nb.jpg\t{label}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list.txt:2: .*characters"):
        read_data_file(str(f))
    f.write_text("a.jpg\tcat\nb.jpg\tcaf\u00e9\n", encoding="utf-8")
    assert [lab for _, lab in read_data_file(str(f))] == ["cat", "caf\u00e9"]
    f.write_text("a.jpg\tred\tapple\n", encoding="utf-8")   # a tab after the delimiter stays part of the label
    assert [lab for _, lab in read_data_file(str(f))] == ["red\tapple"]


def test_the_api_refuses_a_zero_width_label(tmp_path):
    import httpx

    from ppshitu.gallery import Gallery
    g = Gallery.create(tmp_path / "g", 3, index_method="Flat", model_fingerprint="standin")
    g.add(np.eye(3, dtype=np.float32)[:1], ["red"], ["r.png"])
    g.close()
    url, stop = _serve(tmp_path, str(tmp_path / "up"))
    auth = {"Authorization": "Bearer t"}
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/api/items", data={"label": "ca\u200bt"}, headers=auth,
                       files=[("images", ("0.png", _png(0), "image/png"))])
            assert r.status_code == 400 and "U+200B" in r.text, r.text
            r = c.patch("/api/labels/red", json={"label": "\u202eder"}, headers=auth)
            assert r.status_code in (400, 422) and "U+202E" in r.text, r.text
    finally:
        stop()
