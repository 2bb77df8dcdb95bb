"""The gallery doctor in the service (GET /api/gallery/doctor, GET /doctor), in process (TestClient) on a tiny
gallery of clustered vectors with one injected label swap: per-label recall, the swap suspected with its true
label suggested, no server path in the answer, the report cached per gallery version and recomputed after a
write; the page and its files load. A headless-Chromium check that the page renders the tables (skipped
without chromium)."""
import cv2
import numpy as np
import pytest

from ppshitu.gallery import Gallery
from ppshitu.system import RecognitionSystem
from tests.gallery.gallery_helpers import DIM, class_vectors

N_CLASSES, PER_CLASS = 4, 6
SWAPPED = (2, 9)  # item 2 (class 0) and item 9 (class 1) trade labels


class StandIn:
    """A model that is never asked (the doctor reads stored vectors): the service needs one to start."""
    embedding_size, fingerprint = DIM, "standin"

    def preprocess(self, rgb):
        return np.zeros((DIM, 1, 1), np.float32)

    def predict_batch(self, batch):
        return np.ones((len(batch), DIM), np.float32) / np.sqrt(DIM)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from fastapi.testclient import TestClient

    from ppshitu.serving.app import create_app
    from ppshitu.serving.service import Service
    from ppshitu.serving.settings import Settings

    tmp = tmp_path_factory.mktemp("doctor")
    v, labels = class_vectors(N_CLASSES, PER_CLASS, seed=3)
    truth = list(labels)
    labels[SWAPPED[0]], labels[SWAPPED[1]] = truth[SWAPPED[1]], truth[SWAPPED[0]]
    paths = []
    for i, lab in enumerate(labels):  # small images, so the page's thumbnails load
        img = np.full((24, 24, 3), 40 * (truth.index(truth[i]) // PER_CLASS + 1), np.uint8)
        paths.append(f"img_{i:02d}.png")
        cv2.imwrite(str(tmp / paths[-1]), img)
    g = Gallery.create(tmp / "g", DIM, index_method="Flat", model_fingerprint="standin")
    g.add(v, labels, paths)
    service = Service(lambda: RecognitionSystem(StandIn(), Gallery.open(tmp / "g"), None, score_thres=0.5),
                      tmp / "g", Settings(workers=1), image_root=str(tmp)).start()
    client = TestClient(create_app(service), base_url="http://127.0.0.1")
    yield {"client": client, "service": service, "truth": truth, "labels": labels, "dir": tmp / "g",
           "vectors": v}
    client.close()
    service.stop()


def _doctor(served):
    r = served["client"].get("/api/gallery/doctor")
    assert r.status_code == 200, r.text
    return r.json()


def test_the_doctor_answers_per_label_recall_and_finds_the_swap(served):
    d = _doctor(served)
    assert d["items"] == N_CLASSES * PER_CLASS and d["labels"] == N_CLASSES
    table = {r["label"]: r for r in d["label_table"]}
    assert set(table) == set(served["truth"]) and all(r["count"] == PER_CLASS for r in table.values())
    # the two swapped items are each their label's miss; the untouched classes are perfect
    assert table["class 0"]["loo_recall_at_1"] < 1 and table["class 1"]["loo_recall_at_1"] < 1
    assert table["class 2"]["loo_recall_at_1"] == 1 and table["class 3"]["loo_recall_at_1"] == 1
    suspected = {m["id"]: m for m in d["suspected_mislabels"]}
    ids = [r["id"] for r in served["service"].catalog.gallery.records()]
    for i in SWAPPED:
        m = suspected[ids[i]]
        assert m["label"] == served["labels"][i] and m["suggested"] == served["truth"][i]
        assert m["thumbnail"] == f"/api/items/{ids[i]}/thumbnail" and m["name"] == f"img_{i:02d}.png"
    assert len(suspected) <= 3  # at most one false flag on 24 items
    text = str(d)
    assert "'path'" not in text and "'file'" not in text and str(served["dir"].parent) not in text


def test_the_report_is_cached_per_version_and_recomputed_after_a_write(served):
    service = served["service"]
    client = served["client"]
    first = _doctor(served)
    view = client.app.app.state.doctor if hasattr(client.app, "app") else client.app.state.doctor
    runs = view.computed
    assert _doctor(served)["version"] == first["version"] and view.computed == runs  # the cache answered
    g = Gallery.open(served["dir"])
    g.add(served["vectors"][:1] * 1.0, ["class 9"], ["new.png"])  # another writer: a new version
    d = _doctor(served)
    assert view.computed == runs + 1 and d["version"] != first["version"] and d["items"] == first["items"] + 1
    assert "class 9" in d["single_image_labels"]
    assert service.catalog.gallery.version == d["version"]


def test_the_page_and_its_files_load(served):
    client = served["client"]
    page = client.get("/doctor")
    assert page.status_code == 200 and "doctor.js" in page.text and "default-src 'self'" in \
        page.headers["content-security-policy"]
    assert client.get("/doctor/doctor.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/doctor/doctor.css").status_code == 200
    assert client.get("/doctor/nothing.js").status_code == 404
    assert 'href="/doctor"' in client.get("/").text  # the main page links to it
    assert client.get("/api/gallery/doctor?k=0").status_code == 400


def test_the_page_renders_the_tables_in_a_browser(served):
    browser_helpers = pytest.importorskip("tests.browser_helpers")  # skips without chromium
    import threading

    import uvicorn

    from ppshitu.serving.app import create_app

    config = uvicorn.Config(create_app(served["service"]), host="127.0.0.1", port=0, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with browser_helpers.sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser_helpers.CHROMIUM, headless=True, args=["--no-sandbox"])
            page = b.new_page()
            page.goto(f"http://127.0.0.1:{port}/doctor")
            browser_helpers.expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
            rows = page.locator("#doctor-labels tbody tr")
            assert rows.count() >= N_CLASSES
            assert page.locator("#mislabels-table tbody tr").count() >= 2
            assert "suggested" in page.locator("#mislabels-table").inner_text()
            b.close()
    finally:
        server.should_exit = True
        thread.join(10)
