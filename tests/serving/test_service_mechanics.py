"""The service's mechanisms with a stand-in model (no Paddle, in this process): predictors used only
by the thread that built them, the bounded queue, the connection cap, read-only mode, a gallery
replaced by another model, internal errors answered without internals."""
import concurrent.futures
import contextlib
import socket
import threading
import time

import cv2
import httpx
import numpy as np
import pytest

from ppshitu.gallery import Gallery
from ppshitu.serving import Service, Settings, serve_in_thread
from ppshitu.serving.workers import Busy, ThreadOwner
from ppshitu.system import RecognitionSystem
from serving_helpers import ThreadBoundRec

COLOURS = {"red": (220, 0, 0), "green": (0, 220, 0), "blue": (0, 0, 220)}


def png(rgb):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:] = rgb
    return cv2.imencode(".png", img[:, :, ::-1])[1].tobytes()


@pytest.fixture
def gallery_dir(tmp_path):
    g = Gallery.create(tmp_path / "g", 3, index_method="Flat", model_fingerprint="standin")
    g.add(np.eye(3, dtype=np.float32), list(COLOURS), ["r.png", "g.png", "b.png"])
    return tmp_path / "g"


@contextlib.contextmanager
def running(gallery_dir, delay=0.0, made=None, **settings):
    def make_system():
        rec = ThreadBoundRec(delay)
        if made is not None:
            made.append(rec)
        return RecognitionSystem(rec, Gallery.open(gallery_dir), None, score_thres=0.6)
    service = Service(make_system, gallery_dir, Settings(host="127.0.0.1", port=0, **settings)).start()
    url, stop = serve_in_thread(service)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, service
    finally:
        stop()
        service.stop()


def test_predictors_run_only_on_the_threads_that_built_them(gallery_dir):
    made = []
    with running(gallery_dir, made=made, workers=2, token="t") as (client, _):
        def one(i):
            name = list(COLOURS)[i % 3]
            with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
                return [(name, c.post("/predict", content=png(COLOURS[name]))) for _ in range(3)]
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            answers = [a for batch in pool.map(one, range(30)) for a in batch]
    assert [r.status_code for _, r in answers] == [200] * 90
    assert all(r.json()["results"][0]["rec_docs"] == name for name, r in answers)
    assert len(made) == 2 and all(rec.threads == {rec.owner} for rec in made)


def test_without_a_token_writes_answer_403_and_health_says_so(gallery_dir, monkeypatch):
    monkeypatch.delenv("PPSHITU_TOKEN", raising=False)
    with running(gallery_dir) as (client, _):
        h = client.get("/health").json()
        assert h["writes_enabled"] is False and "without a token" in h["writes"]
        for method, path, kw in (("POST", "/api/items", {"files": {"images": png(COLOURS["red"])}}),
                                 ("DELETE", "/api/items/0", {}), ("DELETE", "/api/labels/red", {}),
                                 ("PATCH", "/api/labels/red", {"json": {"label": "crimson"}}),
                                 ("POST", "/api/compact", {})):
            r = client.request(method, path, headers={"Authorization": "Bearer guess"}, **kw)
            assert r.status_code == 403 and "without a token" in r.json()["error"], (method, path)
        assert client.get("/api/labels").json()["count"] == 3  # reads stay open


def test_token_from_the_environment(gallery_dir, monkeypatch):
    monkeypatch.setenv("PPSHITU_TOKEN", "from-env")
    with running(gallery_dir) as (client, _):
        r = client.patch("/api/labels/red", json={"label": "crimson"}, headers={"Authorization": "Bearer from-env"})
        assert r.status_code == 200 and r.json()["moved"] == 1
        assert client.post("/predict", content=png(COLOURS["red"])).json()["results"][0]["rec_docs"] == "crimson"


def test_a_full_queue_answers_503_with_retry_after(gallery_dir):
    with running(gallery_dir, delay=0.3, queue=1) as (client, service):
        def one(_):
            with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
                return c.post("/predict", content=png(COLOURS["blue"]))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        codes = sorted(r.status_code for r in answers)
        assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
        for r in answers:
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1 and "queue" in r.json()["error"]
        assert service.inference.stats()["rejected"] == codes.count(503)
        assert client.get("/health").status_code == 200  # reads never wait behind inference


def test_the_connection_cap_answers_json_503(gallery_dir):
    with running(gallery_dir, max_connections=4, header_timeout=30) as (client, _):
        host, port = client.base_url.host, client.base_url.port
        held = [socket.create_connection((host, port)) for _ in range(5)]
        try:
            s = held[-1]
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.settimeout(5)
            data = b""
            while chunk := s.recv(65536):  # answered, then closed
                data += chunk
            assert data.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in data.lower() and b'"error"' in data
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        assert client.get("/health").status_code == 200  # once they are gone, served again


def test_an_internal_error_is_a_json_500_without_internals(gallery_dir):
    with running(gallery_dir) as (client, _):
        r = client.post("/predict", content=png((1, 0, 0)))
        assert r.status_code == 500 and "logged it as" in r.json()["error"]
        assert "secret" not in r.text and "Traceback" not in r.text
        assert client.post("/predict", content=png(COLOURS["green"])).status_code == 200


def test_a_gallery_replaced_by_another_model_is_refused_not_mixed(gallery_dir):
    with running(gallery_dir) as (client, _):
        assert client.post("/predict", content=png(COLOURS["red"])).status_code == 200
        Gallery.create(gallery_dir, 3, index_method="Flat", model_fingerprint="other-model", overwrite=True,
                       vectors=np.eye(3, dtype=np.float32), labels=["x", "y", "z"])
        r = client.post("/predict", content=png(COLOURS["red"]))
        assert r.status_code == 409 and "other-model" in r.json()["error"]
        assert client.get("/health").json()["model_matches_gallery"] is False


def test_thread_owner_admission_and_queue_timeout():
    gate = threading.Event()
    owner = ThreadOwner("t", lambda: "state", workers=1, capacity=1, queue_timeout=0.2, max_pixels=100).start()
    try:
        first = owner.submit(lambda s: gate.wait(5), pixels=1000)  # alone: admitted whatever its size
        second = owner.submit(lambda s: s, pixels=0)
        with pytest.raises(Busy):
            owner.submit(lambda s: s)  # 1 running + 1 waiting: full
        time.sleep(0.3)
        gate.set()
        assert first.result(5) is True
        with pytest.raises(Busy, match="waited"):
            second.result(5)  # it waited past queue_timeout: answered Busy, not run late
        assert owner.submit(lambda s: s + "!").result(5) == "state!"
        big = threading.Event()
        hold = owner.submit(lambda s: big.wait(5), pixels=60)
        with pytest.raises(Busy, match="MP"):
            owner.submit(lambda s: s, pixels=60)  # 120 pixels in flight > 100
        big.set()
        hold.result(5)
    finally:
        owner.stop()
