"""The service's routes against the real demo models: recognition, search, gallery management,
authentication, limits, and JSON (never a traceback) for every refusal."""
import json
import socket
import time
from urllib.parse import quote

import cv2
import httpx
import numpy as np
import pytest

from serving_helpers import AUTH, learnable_class, read, recognised_scene


@pytest.fixture
def api(server, new_server):
    if not new_server:
        pytest.skip("routes of the new service")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _image(response):
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)


def test_health_and_openapi_docs(api):
    h = api.get("/health").json()
    assert h["status"] == "ok" and h["count"] == 15 and h["labels"] == 5 and h["version"].startswith("v")
    assert h["model"]["fingerprint"] == h["model_fingerprint"] and h["model_matches_gallery"]
    assert h["writes_enabled"] and h["inference"]["capacity"] == 24
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/health", "/predict", "/search", "/api/labels", "/api/items", "/api/items/{item_id}/thumbnail",
                 "/api/items/{item_id}", "/api/labels/{label}", "/api/compact"):
        assert path in paths, path
    assert set(paths["/api/labels/{label}"]) == {"delete", "patch"}
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


def test_predict_names_objects_with_boxes_scores_and_gallery_ids(api, world):
    scene, label = recognised_scene(api, world)
    multipart = api.post("/predict", files={"image": ("scene.jpg", read(scene), "image/jpeg")}).json()
    raw = api.post("/predict", content=read(scene), headers={"Content-Type": "image/jpeg"}).json()
    assert multipart["results"] == raw["results"]
    assert (multipart["width"], multipart["height"]) == (320, 240)
    found = [r for r in raw["results"] if r["rec_docs"] == label]
    assert found, raw["results"]
    r = found[0]
    assert len(r["bbox"]) == 4 and r["source"] in ("det", "image") and 0 < r["rec_scores"] <= 1
    assert r["topk"] and all("id" in t for t in r["topk"])
    top = api.get(f"/api/items/{r['topk'][0]['id']}").json()
    assert top["label"] == r["topk"][0]["label"]
    thumb = api.get(r["topk"][0].get("thumbnail", top["thumbnail"]))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and _image(thumb) is not None


def test_predict_draw_returns_the_drawn_image(api, world):
    scene = read(world["scenes"][0][0])
    jpeg = api.post("/predict?draw=1", content=scene)
    png = api.post("/predict?draw=1&format=png", files={"image": ("s.jpg", scene)})
    assert jpeg.headers["content-type"] == "image/jpeg" and png.headers["content-type"] == "image/png"
    for r in (jpeg, png):
        assert _image(r).shape == (240, 320, 3)
        assert json.loads(r.headers["x-labels"])
    plain = cv2.imdecode(np.frombuffer(scene, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(_image(png).astype(int) - plain).max() > 100  # boxes were drawn


def test_search_gives_nearest_gallery_items_with_thumbnails(api, world):
    name, views = next(iter(world["gallery_classes"].items()))
    out = api.post("/search?k=3", files={"image": ("v.jpg", read(views[0]))}).json()
    assert len(out["results"]) == 3 and out["higher_is_better"]
    best = out["results"][0]
    assert best["label"] == name and best["score"] > 0.99  # a gallery image finds itself
    assert api.get(best["thumbnail"] + "?size=64").status_code == 200
    whole = api.post("/search?k=1&whole=1", content=read(views[0])).json()
    assert whole["box"] is None and len(whole["results"]) == 1


def test_gallery_management_add_duplicates_rename_delete_compact(api, world, server):
    name, views, query = learnable_class(api, world)
    label = f"api {name}"
    query = read(query)
    before = api.get("/health").json()["count"]
    files = [("images", (f"v{i}.jpg", read(v), "image/jpeg")) for i, v in enumerate(views[:3])]
    assert api.post("/api/items", data={"label": label}, files=files).status_code == 401
    added = api.post("/api/items", data={"label": label}, files=files + [("images", ("junk.txt", b"not an image"))],
                     headers=AUTH)
    assert added.status_code == 201, added.text
    body = added.json()
    assert len(body["added"]) == 3 and body["gallery"]["count"] == before + 3
    assert [r["name"] for r in body["rejected"]] == ["junk.txt"] and body["rejected"][0]["status"] == 400
    try:
        again = api.post("/api/items", data={"label": label}, files=files[:2], headers=AUTH)
        assert again.status_code == 200 and not again.json()["added"]
        assert [d["id"] for d in again.json()["duplicates"]] == [a["id"] for a in body["added"][:2]]
        labels = {x["label"]: x["count"] for x in api.get("/api/labels").json()["labels"]}
        assert labels[label] == 3
        items = api.get("/api/items", params={"label": label, "limit": 2}).json()
        assert items["total"] == 3 and len(items["items"]) == 2
        # recognised without retraining: a view the gallery does not hold
        assert label in [r["rec_docs"] for r in api.post("/predict", content=query).json()["results"]]

        renamed = f"renamed {name}"
        r = api.patch("/api/labels/" + quote(label, safe=""), json={"label": renamed}, headers=AUTH)
        assert r.status_code == 200 and r.json()["moved"] == 3, r.text
        labels = {x["label"] for x in api.get("/api/labels").json()["labels"]}
        assert renamed in labels and label not in labels
        assert renamed in [r["rec_docs"] for r in api.post("/predict", content=query).json()["results"]]
        taken = next(iter(world["gallery_classes"]))
        assert api.patch("/api/labels/" + quote(renamed, safe=""), json={"label": taken},
                         headers=AUTH).status_code == 409
        label = renamed

        one = api.get("/api/items", params={"label": label}).json()["items"][0]["id"]
        assert api.delete(f"/api/items/{one}", headers=AUTH).json()["removed"] == [one]
        assert api.get(f"/api/items/{one}").status_code == 404
        assert api.delete(f"/api/items/{one}", headers=AUTH).status_code == 404
    finally:
        gone = api.delete("/api/labels/" + quote(label, safe=""), headers=AUTH)
    assert gone.status_code == 200 and gone.json()["removed"] == 2
    assert label not in {x["label"] for x in api.get("/api/labels").json()["labels"]}
    assert label not in [r["rec_docs"] for r in api.post("/predict", content=query).json()["results"]]
    assert api.delete("/api/labels/" + quote(label, safe=""), headers=AUTH).status_code == 404
    compacted = api.post("/api/compact", headers=AUTH)
    assert compacted.status_code == 200 and compacted.json()["count"] == before


def test_writes_need_the_right_token(api):
    for method, path, kw in (("POST", "/api/items", {"data": {"label": "x"}, "files": {"images": b"x"}}),
                             ("DELETE", "/api/items/0", {}), ("DELETE", "/api/labels/x", {}),
                             ("PATCH", "/api/labels/x", {"json": {"label": "y"}}), ("POST", "/api/compact", {})):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
            r = api.request(method, path, headers=headers, **kw)
            assert r.status_code == 401 and "token" in r.json()["error"], (method, path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")


def _raw(server, request, wait=10):
    s = socket.create_connection((server.host, server.port))
    try:
        s.sendall(request)
        s.settimeout(wait)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def test_bad_input_is_a_json_error_never_a_traceback(api, world, server):
    png_4x4 = cv2.imencode(".png", np.full((4, 4, 3), 128, np.uint8))[1].tobytes()
    cases = [
        (api.post("/predict", content=b""), 400),
        (api.post("/predict", content=b"definitely not an image"), 400),
        (api.post("/predict", content=png_4x4), 400),                                # too small to recognise
        (api.post("/predict", files={"other": ("a.jpg", b"x")}), 400),                # no `image` field
        (api.post("/predict", data={"image": "text, not a file"}, files={"x": ("x", b"")}), 400),
        (api.post("/predict", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"}), 400),
        (api.post("/predict?format=gif&draw=1", content=read(world["scenes"][0][0])), 400),
        (api.post("/search?k=100000", content=b"x"), 400),
        (api.get("/api/items?limit=0"), 400),
        (api.get("/api/items/not-a-number"), 400),
        (api.get("/api/items/999999/thumbnail"), 404),
        (api.get("/api/items/..%2F..%2Fetc%2Fpasswd/thumbnail"), 404),
        (api.get("/nowhere"), 404),
        (api.put("/predict"), 405),
        (api.patch("/api/labels/x", content=b"{not json", headers=AUTH), 400),
        (api.patch("/api/labels/x", json={"name": "y"}, headers=AUTH), 400),
        (api.patch("/api/labels/x", json={"label": "unknown"}, headers=AUTH), 400),   # the reserved answer
        (api.post("/api/items", data={"label": " "}, files={"images": ("a.jpg", b"x")}, headers=AUTH), 400),
        (api.post("/api/items", data={"label": "a\nb"}, files={"images": ("a.jpg", b"x")}, headers=AUTH), 400),
        (api.post("/api/items", data={"label": "only junk"}, files={"images": ("a.jpg", b"x")}, headers=AUTH), 400),
        (api.post("/api/items", data={"label": "many"}, headers=AUTH,
                  files=[("images", (f"{i}.jpg", b"x")) for i in range(17)]), 400),  # --max-files 16
        (api.get("/health", headers={"Host": "attacker.example"}), 400),             # DNS rebinding
    ]
    for response, status in cases:
        req = response.request
        assert response.status_code == status, (req.method, str(req.url), response.status_code, response.text[:300])
        body = response.json()
        assert body["error"] and body["status"] == status, body
        assert "Traceback" not in response.text and 'File "' not in response.text


def test_body_limits_are_checked_before_reading(api, server):
    start = time.monotonic()
    big = _raw(server, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                       b"Content-Length: 999999999\r\n\r\n")
    assert time.monotonic() - start < 2, "answered before the body, and the connection closed"
    assert big.startswith(b"HTTP/1.1 413") and b'"error"' in big

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"\0" * (1 << 20)
    r = api.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    huge_header = _raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert huge_header.startswith(b"HTTP/1.1 431") and b'"error"' in huge_header
    huge_slow = socket.create_connection((server.host, server.port))  # arriving piecemeal: h11's buffer limit
    try:
        huge_slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        time.sleep(0.1)
        huge_slow.sendall(b"a" * 40000)
        huge_slow.settimeout(5)
        assert huge_slow.recv(65536).startswith(b"HTTP/1.1 400")
    finally:
        huge_slow.close()
