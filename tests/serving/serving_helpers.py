"""What the serving tests share besides fixtures (conftest.py has those)."""
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import bench_service  # noqa: E402,F401

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def read(path):
    with open(path, "rb") as f:
        return f.read()


class ThreadBoundRec:
    """A mean-colour embedding that, like a oneDNN predictor, fails on any thread but its maker's."""
    embedding_size, fingerprint = 3, "standin"

    def __init__(self, delay=0.0):
        self.owner, self.delay, self.threads = threading.get_ident(), delay, set()

    def preprocess(self, rgb):
        return rgb.reshape(-1, 3).mean(0).astype(np.float32)[:, None, None]

    def predict_batch(self, batch):
        self.threads.add(threading.get_ident())
        if threading.get_ident() != self.owner:
            raise RuntimeError("std::exception")
        if self.delay:
            time.sleep(self.delay)
        v = batch.reshape(len(batch), 3)
        if (v[:, 0] == 1).any():  # a 1/255-red image: an unexpected failure inside the model
            raise ValueError("secret internal state 0xdeadbeef")
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def predict(self, images):
        return self.predict_batch(np.stack([self.preprocess(im) for im in images]))


def recognised_scene(client, world):
    """(scene path, a label of its objects the service names right): the page test shows it there.
    Chosen by asking the service, so that another demo model changes which scene, not the test."""
    for path, truth in world["scenes"]:
        got = {r["rec_docs"] for r in client.post("/predict", content=read(path)).json()["results"]}
        hits = sorted(got & set(truth))
        if hits:
            return path, hits[0]
    raise AssertionError("the service names no object of any test scene right")


def learnable_class(client, world, skip=()):
    """(class name, its views, a held-out view that is recognised once views[:3] are added): found by
    adding each new class through the API and removing it again."""
    from urllib.parse import quote

    for name, views in world["extra_classes"].items():
        if name in skip:
            continue
        label = f"probe {name}"
        files = [("images", (f"v{i}.jpg", read(v), "image/jpeg")) for i, v in enumerate(views[:3])]
        assert client.post("/api/items", data={"label": label}, files=files, headers=AUTH).status_code == 201
        try:
            for query in views[3:]:
                if label in [r["rec_docs"] for r in client.post("/predict", content=read(query)).json()["results"]]:
                    return name, views, query
        finally:
            assert client.delete("/api/labels/" + quote(label, safe=""), headers=AUTH).status_code == 200
    raise AssertionError("no new class is recognised from a view it was not given, after adding 3 views")
