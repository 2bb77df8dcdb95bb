"""tools/migrate_gallery.py: a gallery copied FAISS -> Milvus Lite -> FAISS keeps every item's vector,
label, path and box and the gallery's fingerprint, dist_type and index method; the copy is verified by
counts and a sample search; a destination that exists is replaced only when asked, atomically."""
import os
import subprocess
import sys

import numpy as np
import pytest


from ppshitu.errors import ConfigError  # noqa: E402
from ppshitu.gallery import Gallery, GalleryError  # noqa: E402
from ppshitu.gallery.migrate_backends import migrate, parse_target, read_items  # noqa: E402
from ppshitu.gallery.milvus_store import MilvusStore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM = 24


def source_gallery(path, dist_type="IP", method="HNSW32", n=300):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    labels = [f"class {i % 12}" for i in range(n)]
    paths = [f"img/{i}.jpg" if i % 10 else None for i in range(n)]     # some items without a path
    boxes = [[float(i), 1.0, i + 10.0, 20.0] if i % 3 == 0 else None for i in range(n)]
    g = Gallery.create(path, DIM, dist_type=dist_type, index_method=method, model_fingerprint="fp-1",
                       vectors=v, labels=labels, paths=paths, boxes=boxes,
                       **({"ef_search": 128} if method == "HNSW32" else {}))
    g.remove(labels=["class 11"])                                      # a gallery with history
    return g


def items(gallery):
    vectors, records = read_items(gallery)
    order = sorted(range(len(records)), key=lambda i: (records[i]["label"], records[i]["path"] or "",
                                                      tuple(vectors[i].round(5))))
    return vectors[order], [(records[i]["label"], records[i]["path"], records[i]["box"]) for i in order]


def close_all(*galleries):
    for g in galleries:
        getattr(g, "close", lambda: None)()


@pytest.mark.parametrize("dist_type", ["IP", "L2"])
def test_faiss_to_milvus_and_back_keeps_items_and_metadata(tmp_path, dist_type):
    src = source_gallery(tmp_path / "faiss", dist_type)
    db = str(tmp_path / "g.db")
    summary = migrate(tmp_path / "faiss", f"{db}#shop")
    assert summary["count"] == len(src) == 275 and summary["same_top1"] + summary["ties"] == summary["sampled"] == 200
    mil = MilvusStore.open(db, collection="shop", model_fingerprint="fp-1", embedding_size=DIM)
    assert mil.meta["index_method"] == "HNSW32" and mil.meta["dist_type"] == dist_type
    assert mil.meta["milvus_index"]["search_params"] == {"ef": 128}   # the source's ef_search came along
    v_src, rows_src = items(src)
    v_mil, rows_mil = items(mil)
    assert rows_src == rows_mil and np.allclose(v_src, v_mil, atol=1e-6)
    mil.close()
    back = migrate(f"{db}#shop", tmp_path / "faiss_again", index_method="Flat")
    assert back["count"] == 275
    again = Gallery.open(tmp_path / "faiss_again", model_fingerprint="fp-1")
    v_back, rows_back = items(again)
    assert again.manifest["index_method"] == "Flat" and again.manifest["dist_type"] == dist_type
    assert rows_back == rows_src and np.allclose(v_back, v_src, atol=1e-6)
    close_all(src, again)


def test_an_existing_destination_is_replaced_only_when_asked(tmp_path):
    source_gallery(tmp_path / "faiss")
    db = str(tmp_path / "g.db")
    migrate(tmp_path / "faiss", db, dst_collection="shop")
    with pytest.raises(GalleryError, match="already exists"):
        migrate(tmp_path / "faiss", db, dst_collection="shop")
    other = source_gallery(tmp_path / "faiss2", n=40)
    summary = migrate(tmp_path / "faiss2", db, dst_collection="shop", overwrite=True)
    mil = MilvusStore.open(db, collection="shop")
    assert summary["count"] == len(mil) == len(other) and len(mil._client.list_collections()) == 1
    close_all(mil, other)


def test_an_index_milvus_lite_does_not_build_is_refused_before_copying(tmp_path):
    source_gallery(tmp_path / "pq", method="IVFPQ")
    db = str(tmp_path / "g.db")
    with pytest.raises(ConfigError, match=r"IVF_PQ.*\(index_method Flat, HNSW32, IVF, IVFSQ8\)"):
        migrate(tmp_path / "pq", f"{db}#shop")
    summary = migrate(tmp_path / "pq", f"{db}#shop", index_method="HNSW32")
    assert summary["index_method"] == "HNSW32" and summary["count"] == 275


def test_a_copy_that_answers_differently_fails_the_check(tmp_path, monkeypatch):
    source_gallery(tmp_path / "faiss")
    real_search = MilvusStore.search

    def wrong(self, vectors, k=5):
        labels, scores, ids = real_search(self, vectors, k)
        return [["not it"] + row[1:] for row in labels], scores - 0.5, ids
    monkeypatch.setattr(MilvusStore, "search", wrong)
    with pytest.raises(GalleryError, match="migration check: stored vector .* finds 'not it'"):
        migrate(tmp_path / "faiss", str(tmp_path / "g.db"))


def test_targets_are_told_apart():
    assert parse_target("a/b")[0] == "faiss"
    assert parse_target("a/b.db#x") == ("milvus", "a/b.db#x", {"collection": None})
    assert parse_target("http://h:19530", "shop") == ("milvus", "http://h:19530", {"collection": "shop"})
    with pytest.raises(ConfigError, match="collection applies to a Milvus URI"):
        parse_target("a/b", "shop")


def test_the_tool_end_to_end(tmp_path):
    source_gallery(tmp_path / "faiss")
    db = str(tmp_path / "g.db")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "migrate_gallery.py"), str(tmp_path / "faiss"),
                          db, "--collection", "shop", "--sample", "50"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "count=275" in run.stdout and "sampled=50" in run.stdout
    again = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "migrate_gallery.py"), str(tmp_path / "faiss"),
                            db, "--collection", "shop"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "already exists" in again.stderr
