"""The service on a Milvus gallery (IndexProcess.backend: milvus), with no change of its own: with the
real demo models on a Milvus Lite file built from the FAISS gallery's images, the same answers as on
FAISS and the gallery managed through the API; with a stand-in model in this process, the read routes
follow appends made through the API and by another store object (Milvus Lite: by its revision) or
another process (Milvus Lite's server mode, which has no revisions: read anew on every call)."""
import os
import subprocess
import sys
from urllib.parse import quote

import httpx
import numpy as np
import pytest


from ppshitu.errors import ConfigError  # noqa: E402
from ppshitu.gallery.base import create_gallery, open_gallery  # noqa: E402
from ppshitu.serving import Service, Settings, serve_in_thread  # noqa: E402
from ppshitu.system import RecognitionSystem  # noqa: E402
from serving_helpers import AUTH, ROOT, TOKEN, ThreadBoundRec, bench_service, learnable_class, read  # noqa: E402
from test_service_mechanics import COLOURS, png  # noqa: E402
from tests.gallery.test_milvus_store import lite_server  # noqa: E402,F401  (a fixture)


@pytest.fixture(scope="module")
def milvus_server(world, tmp_path_factory):
    """deploy/serve.py on a Milvus Lite file that tools/build_gallery.py filled from the FAISS gallery's list."""
    db = str(tmp_path_factory.mktemp("milvus") / "gallery.db")
    overrides = [*world["overrides"], "IndexProcess.backend=milvus", f"IndexProcess.uri={db}",
                 "IndexProcess.collection=shop"]
    build = overrides + ["IndexProcess.index_operation=new", f"IndexProcess.data_file={world['root']}/gallery.txt"]
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_gallery.py"), "-c", world["config"],
                           *sum((["-o", o] for o in build), [])], capture_output=True, text=True, cwd=ROOT,
                          env=bench_service._env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    srv = bench_service.ServerProcess({**world, "overrides": overrides}, token=TOKEN)
    yield srv, db
    alive, log = srv.alive(), srv.stderr()
    srv.stop()
    assert alive and "Traceback" not in log, log[-3000:]


def _labels(client):
    return {r["label"]: r["count"] for r in client.get("/api/labels").json()["labels"]}


def _names(client, image):
    return [r["rec_docs"] for r in client.post("/predict", content=read(image)).json()["results"]]


def test_a_milvus_lite_gallery_answers_like_faiss_and_is_managed_through_the_api(server, milvus_server, world):
    srv, db = milvus_server
    with httpx.Client(base_url=server.url, timeout=60) as faiss, httpx.Client(base_url=srv.url, timeout=60) as api:
        h = api.get("/health").json()
        assert (h["status"], h["backend"], h["location"], h["count"], h["labels"]) == \
            ("ok", "milvus", f"{db}#shop", 15, 5) and h["model_matches_gallery"]
        assert faiss.get("/health").json()["backend"] == "faiss"
        assert _labels(api) == _labels(faiss)  # (the FAISS gallery as built: other tests clean up after them)
        for scene, _ in world["scenes"]:
            got, want = (c.post("/predict", content=read(scene)).json()["results"] for c in (api, faiss))
            assert [(r["rec_docs"], r["bbox"]) for r in got] == [(r["rec_docs"], r["bbox"]) for r in want]
            assert np.allclose([r["rec_scores"] for r in got], [r["rec_scores"] for r in want], atol=1e-3)

        name, views, query = learnable_class(api, world)  # (adds and deletes a probe class)
        files = [("images", (f"v{i}.jpg", read(v), "image/jpeg")) for i, v in enumerate(views[:3])]
        added = api.post("/api/items", data={"label": "milvus new"}, files=files, headers=AUTH)
        assert added.status_code == 201, added.text
        ids = sorted(a["id"] for a in added.json()["added"])
        assert len(ids) == 3 and _labels(api)["milvus new"] == 3
        assert sorted(r["id"] for r in api.get("/api/items", params={"label": "milvus new"}).json()["items"]) == ids
        assert api.get("/health").json()["count"] == 18 and "milvus new" in _names(api, query)
        uploads = os.path.join(db + ".uploads", "shop")
        assert sum(len(f) for _, _, f in os.walk(uploads)) == 3

        renamed = api.patch("/api/labels/" + quote("milvus new"), json={"label": "milvus renamed"}, headers=AUTH)
        assert renamed.status_code == 200 and sorted(renamed.json()["ids"]) == ids  # (Milvus: ids are path hashes)
        assert "milvus new" not in _labels(api) and _labels(api)["milvus renamed"] == 3
        assert "milvus renamed" in _names(api, query)

        assert api.delete(f"/api/items/{ids[0]}", headers=AUTH).status_code == 200
        assert api.get("/health").json()["count"] == 17 and api.get(f"/api/items/{ids[0]}").status_code == 404
        gone = api.delete("/api/labels/" + quote("milvus renamed"), headers=AUTH)
        assert gone.json()["removed"] == 2 and api.get("/health").json()["count"] == 15
        assert sum(len(f) for _, _, f in os.walk(uploads)) == 0


OTHER_PROCESS = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from ppshitu.gallery.milvus_store import MilvusStore
g = MilvusStore.open(sys.argv[2], collection="shop")
g.add(np.array([[0, 220, 220]], np.float32), "cyan", ["c.png"])
"""


@pytest.mark.parametrize("where", ["lite", "server"])
def test_reads_follow_appends_through_the_api_and_by_another_writer(tmp_path, request, where):
    uri = str(tmp_path / "g.db") if where == "lite" else request.getfixturevalue("lite_server")
    ip = {"backend": "milvus", "uri": uri, "collection": "shop", "index_method": "Flat"}
    other = create_gallery(ip, 3, model_fingerprint="standin", vectors=np.eye(3, dtype=np.float32) * 220,
                           labels=list(COLOURS), paths=["r.png", "g.png", "b.png"])
    settings = Settings(host="127.0.0.1", port=0, token="t", upload_dir=None if where == "lite" else str(tmp_path))
    service = Service(lambda: RecognitionSystem(ThreadBoundRec(), open_gallery(ip), None, score_thres=0.6), ip,
                      settings).start()
    url, stop = serve_in_thread(service)
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            first = api.get("/api/items").json()  # (indexed: the catalog caches it per version)
            assert first["total"] == 3 and _labels(api) == {"red": 1, "green": 1, "blue": 1}
            yellow = api.post("/api/items?label=yellow", content=png((220, 220, 0)),
                              headers={"Authorization": "Bearer t"})
            assert yellow.status_code == 201, yellow.text
            second = api.get("/api/items").json()
            assert second["total"] == 4 and _labels(api)["yellow"] == 1

            if where == "lite":
                other.add(np.array([[0, 220, 220]], np.float32), "cyan", ["c.png"])  # another store object
            else:
                subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(ROOT), uri], check=True, timeout=120)
            assert _labels(api)["cyan"] == 1
            third = api.get("/api/items").json()
            assert third["total"] == 5
            versions = [first["version"], second["version"], third["version"]]
            assert len(set(versions)) == 3 if where == "lite" else versions == [None] * 3
            assert api.get(f"/api/items/{yellow.json()['added'][0]['id']}").json()["label"] == "yellow"
            assert [r["label"] for r in api.get("/api/items?label=cyan").json()["items"]] == ["cyan"]
            assert api.get("/health").json()["count"] == 5
            answers = [r["rec_docs"] for r in api.post("/predict", content=png((0, 220, 220))).json()["results"]]
            assert answers == ["cyan"]

            other.remove(labels=["cyan"])
            assert "cyan" not in _labels(api) and api.get("/api/items").json()["total"] == 4
            assert api.patch("/api/labels/yellow", json={"label": "gold"},
                             headers={"Authorization": "Bearer t"}).status_code == 200
            assert [r["rec_docs"] for r in api.post("/predict", content=png((220, 220, 0))).json()["results"]] \
                == ["gold"]
        if where == "lite":
            assert os.path.isdir(str(tmp_path / "g.db.uploads" / "shop"))
    finally:
        stop()
        service.stop()
        other.close()


def test_a_milvus_server_needs_an_upload_dir():
    ip = {"backend": "milvus", "uri": "http://127.0.0.1:1", "collection": "shop"}
    with pytest.raises(ConfigError, match="--upload-dir"):
        Service(lambda: None, ip)
