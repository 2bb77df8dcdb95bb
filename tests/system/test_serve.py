"""deploy/serve.py on loopback, with a real Gallery and the mean-colour stand-in model."""
import importlib.util
import json
import pathlib
import threading
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from ppshitu.gallery import Gallery
from ppshitu.system import RecognitionSystem

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ppshitu_serve", ROOT / "deploy" / "serve.py")
serve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve)


class MeanColourRec:
    embedding_size, fingerprint = 3, None

    def preprocess(self, rgb):
        return rgb.reshape(-1, 3).mean(0).astype(np.float32)[:, None, None]

    def predict_batch(self, batch):
        v = batch.reshape(len(batch), 3)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@pytest.fixture
def server(tmp_path):
    g = Gallery.create(tmp_path / "g", 3, index_method="Flat")
    g.add(np.eye(3, dtype=np.float32), ["red", "green", "blue"], ["r", "g", "b"])
    system = RecognitionSystem(MeanColourRec(), Gallery.open(tmp_path / "g"), None, score_thres=0.6)
    srv = serve.make_server(system, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _post(url, body):
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_predict_and_health(server):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:] = (0, 0, 220)  # blue, in RGB
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    out = _post(server + "/predict", png.tobytes())
    assert [r["rec_docs"] for r in out["results"]] == ["blue"]
    with urllib.request.urlopen(server + "/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok", "gallery_size": 3, "labels": 3}


def test_bad_body_is_a_clear_400(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        _post(server + "/predict", b"definitely not an image")
    assert e.value.code == 400 and "not a decodable image" in json.loads(e.value.read())["error"]
