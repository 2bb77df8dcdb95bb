"""Issue 23, class 4: an HTTP write is applied whole or not at all.

POST /api/items with 32 images used to embed and publish them 8 at a time: a server SIGKILLed during
the request left 8, 16 or 24 of them published (the client got no answer) and a retry reported those
as duplicates. Now the request embeds every image first and publishes them in ONE gallery update.

The real server (deploy/serve.py, a child process) on its own copy of the test gallery is SIGKILLed
mid-request at two observable points, restarted, and must hold none or all 32 of the images; a retry
must then succeed, adding the rest without reporting some of them as duplicates:
  * "embedded": once the first inference job (the first embedding batch) has finished (/health's
    inference.avg_job_ms moves off its initial value on a fresh server);
  * "published": as soon as the gallery publishes any new version (its CURRENT file changes).
"""
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from serving_helpers import AUTH, TOKEN, bench_service

N_IMAGES = 32
ARGS = ["--queue", "24", "--max-files", "64", "--max-body-mb", "16"]


@pytest.fixture(scope="module")
def own_world(world, tmp_path_factory):
    """The session world with a copy of its gallery: the servers killed here touch no other test's."""
    index = tmp_path_factory.mktemp("atomic") / "index"
    shutil.copytree(world["index_dir"], index, ignore=shutil.ignore_patterns("uploads"))
    overrides = [o for o in world["overrides"] if not o.startswith("IndexProcess.index_dir=")]
    return {**world, "index_dir": str(index), "overrides": overrides + [f"IndexProcess.index_dir={index}"]}


def images(seed0):
    """32 distinct JPEG views of classes the gallery does not hold."""
    classes = list(bench_service.EXTRA_CLASSES)
    return [bench_service.new_object_jpeg(classes[i % len(classes)], seed0 + i) for i in range(N_IMAGES)]


def post_items(srv, label, blobs, timeout=300):
    body, ctype = bench_service.multipart([("label", label)],
                                          [("images", f"img{i}.jpg", b) for i, b in enumerate(blobs)])
    client = bench_service.Client(srv.host, srv.port, timeout=timeout)
    try:
        status, _, data, _ = client.request("POST", "/api/items", body,
                                            {**AUTH, "Content-Type": ctype, "Host": "127.0.0.1"})
    finally:
        client.close()
    return status, data


def get_json(srv, path):
    client = bench_service.Client(srv.host, srv.port, timeout=60)
    try:
        status, _, data, _ = client.request("GET", path, headers={"Host": "127.0.0.1"})
    finally:
        client.close()
    assert status == 200, (path, status, data[:300])
    return json.loads(data)


def count_of(srv, label):
    return get_json(srv, f"/api/items?label={quote(label)}&limit=500")["total"]


def current(index_dir):
    try:
        return Path(index_dir, "CURRENT").read_bytes()
    except OSError:
        return None


def kill_when(srv, world, trigger, label, blobs, deadline=240):
    """POST the images on a thread and SIGKILL the server when `trigger` fires; (what fired, the
    client's status: 0 when it got no answer)."""
    before = current(world["index_dir"])
    avg_before = get_json(srv, "/health")["inference"]["avg_job_ms"]  # a fresh server: its initial guess
    result = {}
    poster = threading.Thread(target=lambda: result.update(answer=post_items(srv, label, blobs)), daemon=True)
    poster.start()
    fired, end = None, time.monotonic() + deadline
    while time.monotonic() < end:
        done = not poster.is_alive()  # read before the trigger: a publish and its answer may fall in one sleep
        if trigger == "embedded":
            if get_json(srv, "/health")["inference"]["avg_job_ms"] != avg_before:
                fired = "the first embedding batch finished"
        elif current(world["index_dir"]) != before:
            fired = "a new gallery version was published"
        if fired:
            os.kill(srv.pid, signal.SIGKILL)
            srv.proc.wait(30)
            break
        if done:
            break
        time.sleep(0.005)
    poster.join(60)
    srv.stop()
    status = result.get("answer", (None, b""))[0]
    return fired, status


@pytest.mark.parametrize("trigger", ["embedded", "published"])
def test_a_server_killed_during_post_items_publishes_none_or_all(own_world, trigger):
    label = f"atomic {trigger}"
    blobs = images(1000 if trigger == "embedded" else 2000)
    srv = bench_service.ServerProcess(own_world, token=TOKEN, args=ARGS)
    fired, status = kill_when(srv, own_world, trigger, label, blobs)
    assert fired, f"the trigger {trigger!r} never fired (the request answered {status} first)"

    srv = bench_service.ServerProcess(own_world, token=TOKEN, args=ARGS)
    try:
        after_kill = count_of(srv, label)
        assert after_kill in (0, N_IMAGES), \
            f"killed when {fired}: {after_kill} of {N_IMAGES} images were published (a half-applied write)"
        before = get_json(srv, "/health")["version"]
        status, data = post_items(srv, label, blobs)
        body = json.loads(data)
        assert status in (200, 201), (status, body)
        assert not body["rejected"], body["rejected"]
        added, dups = len(body["added"]), len(body["duplicates"])
        # the retry adds what is missing; it reports duplicates only if the whole first request was in
        assert (added, dups) == ((N_IMAGES, 0) if after_kill == 0 else (0, N_IMAGES)), \
            f"retry after the kill ({after_kill} published): {added} added, {dups} duplicates"
        assert count_of(srv, label) == N_IMAGES
        if added:  # the whole request, one gallery version
            assert int(body["gallery"]["version"].lstrip("v")) == int(before.lstrip("v")) + 1, (before, body["gallery"])
        log = srv.stderr()
    finally:
        srv.stop()
    assert "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------ every write route: one version
def test_every_write_route_publishes_exactly_one_gallery_version(tmp_path):
    """POST /api/items (more images than one embedding batch), PATCH /api/labels (rename, and merge),
    DELETE an item, DELETE a class, POST /api/compact: each is ONE gallery update, so a server killed
    during any of them leaves the gallery as it was before the request or as it is after it (a rename
    used to remove the class and add it back in two updates: killed in between, the class was lost)."""
    import cv2
    import httpx
    import numpy as np

    from ppshitu.gallery import Gallery
    from ppshitu.serving import Service, Settings, serve_in_thread
    from ppshitu.system import RecognitionSystem
    from serving_helpers import ThreadBoundRec

    g = Gallery.create(tmp_path / "g", 3, index_method="Flat", model_fingerprint="standin")
    g.add(np.eye(3, dtype=np.float32), ["red", "green", "blue"], ["r.png", "g.png", "b.png"])
    service = Service(lambda: RecognitionSystem(ThreadBoundRec(), Gallery.open(tmp_path / "g"), None),
                      tmp_path / "g", Settings(host="127.0.0.1", port=0, token="t",
                                               upload_dir=str(tmp_path / "up"))).start()
    url, stop = serve_in_thread(service)
    auth = {"Authorization": "Bearer t"}

    def version():
        return int(Path(tmp_path / "g" / "CURRENT").read_text().strip().lstrip("v"))

    def png(i):
        img = np.zeros((24, 24, 3), np.uint8)
        img[:] = (20 + 7 * i, 200 - 5 * i, 90)
        return cv2.imencode(".png", img)[1].tobytes()
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            def first_id(label):
                return c.get(f"/api/items?label={label}").json()["items"][0]["id"]
            steps = [
                ("add 20", lambda: c.post("/api/items", data={"label": "olive"}, headers=auth,
                                          files=[("images", (f"{i}.png", png(i), "image/png")) for i in range(20)])),
                ("rename", lambda: c.patch("/api/labels/olive", json={"label": "khaki"}, headers=auth)),
                ("merge", lambda: c.patch("/api/labels/red?merge=1", json={"label": "khaki"}, headers=auth)),
                ("delete item", lambda: c.delete(f"/api/items/{first_id('khaki')}", headers=auth)),
                ("delete class", lambda: c.delete("/api/labels/green", headers=auth)),
                ("compact", lambda: c.post("/api/compact", headers=auth)),
            ]
            for name, call in steps:
                before = version()
                r = call()
                assert r.status_code in (200, 201), (name, r.status_code, r.text)
                assert version() == before + 1, f"{name}: {version() - before} gallery versions for one request"
            labels = {x["label"]: x["count"] for x in c.get("/api/labels").json()["labels"]}
            assert labels == {"khaki": 20, "blue": 1}, labels
    finally:
        stop()
        service.stop()
