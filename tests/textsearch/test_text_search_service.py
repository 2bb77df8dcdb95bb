"""The service's text search (POST /search with ?text= or a JSON body) on a tiny imported text-image model, in
process (TestClient): the right images in English and Chinese, truncation said, and the refusals (empty query,
bad JSON, a service whose model has no text encoder)."""
import pytest

from textsearch_helpers import cli, colour_images, import_args


def _client(model, index, out):
    from fastapi.testclient import TestClient

    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.serving.app import create_app
    from ppshitu.serving.service import Service
    from ppshitu.serving.settings import Settings

    args = cli(model, index, out, **{"Global.det_inference_model_dir": ""})
    cfg = load_config(args[1], args[3::2], INFER_SCHEMA)
    service = Service.from_config(cfg, Settings(workers=1)).start()
    return service, TestClient(create_app(service), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import tools.import_model as import_tool
    import tools.index_folder as index_tool

    tmp = tmp_path_factory.mktemp("textservice")
    colour_images(str(tmp / "photos"), per_colour=2)
    clients = {}
    for name, argv in (("clip", import_args(str(tmp), "wordpiece", with_mask=True, length=10)),
                       ("plain", None)):
        if argv is None:  # the same image encoder imported without its text tower
            argv = import_args(str(tmp / "p"), "wordpiece", out="plain")
            argv = argv[:2] + argv[argv.index("--input-size"):]
        import_tool.main(argv)
        model = argv[argv.index("--out") + 1]
        index_tool.main(cli(model, str(tmp / f"{name}_index"), str(tmp)) + ["--dir", str(tmp / "photos")])
        clients[name] = _client(model, str(tmp / f"{name}_index"), str(tmp))
    yield {k: c for k, (_, c) in clients.items()}
    for service, client in clients.values():
        client.close()
        service.stop()


@pytest.mark.parametrize("how", ["query", "json"])
@pytest.mark.parametrize("text,colour", [("红色的汽车", "red"), ("a blue sky", "blue"), ("绿色", "green")])
def test_text_search_answers_the_colour(served, how, text, colour):
    client = served["clip"]
    r = (client.post("/search", params={"text": text, "k": 2}) if how == "query"
         else client.post("/search?k=2", json={"text": text}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["label"] for h in body["results"]] == [colour, colour] and body["text"] == text
    assert body["truncated"] is False and "note" not in body and body["box"] is None
    assert all(h["thumbnail"].endswith("/thumbnail") for h in body["results"])


def test_long_query_is_cut_and_said(served):
    r = served["clip"].post("/search", json={"text": "红色 " + "的汽车" * 30})
    assert r.status_code == 200 and r.json()["truncated"] is True
    assert "context length 10" in r.json()["note"] and r.json()["results"][0]["label"] == "red"


@pytest.mark.parametrize("send,status,words", [
    ({"params": {"text": "  "}}, 400, "empty"),
    ({"json": {"text": ""}}, 400, "empty"),
    ({"json": {"query": "red"}}, 400, '{"text"'),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid"),
])
def test_bad_text_queries_are_refused(served, send, status, words):
    r = served["clip"].post("/search", **send)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_a_model_without_text_encoder_refuses_text_but_searches_images(served):
    import io

    import numpy as np
    from PIL import Image

    assert served["clip"].get("/health").json()["model"]["text_search"] is True
    assert served["plain"].get("/health").json()["model"]["text_search"] is False
    r = served["plain"].post("/search", params={"text": "red"})
    assert r.status_code == 409 and "no text encoder" in r.json()["error"]
    buf = io.BytesIO()
    Image.fromarray(np.full((48, 48, 3), (230, 30, 30), np.uint8)).save(buf, "PNG")
    r = served["plain"].post("/search", content=buf.getvalue(), params={"k": 1})
    assert r.status_code == 200 and r.json()["results"][0]["label"] == "red"
