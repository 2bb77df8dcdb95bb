"""Search tuned on the gallery's own vectors (ppshitu/gallery/search_tuning.py): the stored ef_search / nprobe
reaches recall@1 >= 0.98 against exact search on held-out photos of indexed objects (photos the gallery
never held, not the tuner's own queries), an explicit value
wins, galleries written before tuning keep their value, `index_method: auto` chooses by size, and a
gallery that grew by RETUNE_GROWTH is tuned again."""
import json
import os

import faiss
import numpy as np
import pytest

from ppshitu.gallery import Gallery, indexes, layout, search_tuning

DIM = 32
VIEWS = 8


def photos(n_classes, seed=0, views=VIEWS + 1):
    """Unit vectors: `views` per class around crowded class centres (a common direction, as embeddings
    have), the last view of each class held out as its query."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIM)
    centres = common / np.linalg.norm(common) + 0.6 * rng.standard_normal((n_classes, DIM)) / np.sqrt(DIM)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    v = np.repeat(centres, views, axis=0) + 0.25 * rng.standard_normal((n_classes * views, DIM)) / np.sqrt(DIM)
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    labels = [f"object {i // views}" for i in range(len(v))]
    held = np.arange(len(v)) % views == views - 1
    return v[~held], [lab for lab, h in zip(labels, held) if not h], v[held]


def held_out_recall(g, queries, vectors):
    exact = faiss.knn(queries, vectors, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
    _, scores, _ = g.search(queries, k=1)
    return float(np.mean(scores[:, 0] >= exact - 1e-4))


@pytest.mark.parametrize("method,knob", [("HNSW32", "ef_search"), ("IVF", "nprobe"), ("IVFSQ8", "nprobe"),
                                         ("IVFPQFS", "nprobe")])
def test_the_tuned_value_is_stored_and_reaches_its_recall_on_held_out_queries(tmp_path, method, knob):
    v, labels, queries = photos(500)
    Gallery.create(tmp_path / "g", DIM, index_method=method, vectors=v, labels=labels)
    g = Gallery.open(tmp_path / "g")
    record = g.manifest["search_tuning"]
    assert record["origin"] == "tuned" and record["param"] == knob and record["count"] == len(v)
    assert record["recall_at_1"] >= search_tuning.TARGET_RECALL
    assert record["query_model"] == {"ef_search": "perturbed", "nprobe": "leave-one-out"}[knob]
    assert g.search_setting()["value"] == record["value"] == g.manifest["index_params"][knob]
    assert held_out_recall(g, queries, v) >= 0.98                     # on photos the gallery never saw
    # the smallest such value: one step below misses the target on the tuner's own queries
    steps = search_tuning.steps_for(knob)
    if record["value"] > steps[0]:
        below = steps[steps.index(record["value"]) - 1]
        again = search_tuning.tune(lambda q, value: g.set_search_params(**{knob: value})._top(q, 2), v, g.ids,
                                   labels, True, knob, limit=below)
        assert not again["reached"] and again["value"] == below

@pytest.mark.parametrize("method", ["IVFSQ8", "IVFPQFS"])
def test_compressed_ivf_answers_as_ivf_from_a_fraction_of_the_index(tmp_path, method):
    # 8-bit / 4-bit PQ codes with the best candidates re-scored exactly: IVF's answers (exact IP scores; the
    # fast-scan codes are built in L2, the same order for unit vectors)
    v, labels, queries = photos(500)
    ivf = Gallery.create(tmp_path / "ivf", DIM, index_method="IVF", nprobe=8, vectors=v, labels=labels)
    sq8 = Gallery.create(tmp_path / "sq8", DIM, index_method=method, nprobe=8, vectors=v, labels=labels)
    exact = faiss.knn(queries, v, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
    (_, s_ivf, _), (_, s_sq8, _) = ivf.search(queries, k=1), sq8.search(queries, k=1)
    np.testing.assert_allclose(s_sq8[:, 0], np.einsum("nd,nd->n", queries, v[sq8.search(queries, k=1)[2][:, 0]]),
                               atol=1e-5)                                # scores are exact, not the codes'
    assert np.mean(s_sq8[:, 0] >= exact - 1e-4) >= np.mean(s_ivf[:, 0] >= exact - 1e-4) - 0.01
    assert len(faiss.serialize_index(sq8.index)) < 0.6 * len(faiss.serialize_index(ivf.index))


def test_an_unreachable_target_takes_the_smallest_value_on_the_plateau_not_the_largest_step(tmp_path):
    v, labels, _ = photos(500)
    g = Gallery.create(tmp_path / "g", DIM, index_method="IVF", vectors=v, labels=labels)
    nlist = faiss.extract_index_ivf(g.index).nlist
    top2 = lambda q, value: g.set_search_params(nprobe=value)._top(q, 2)  # noqa: E731
    record = search_tuning.tune(top2, v, g.ids, labels, True, "nprobe", limit=nlist, target=1.01)
    assert not record["reached"] and record["value"] < nlist // 2
    at_all = search_tuning.tune(top2, v, g.ids, labels, True, "nprobe", limit=nlist, target=1.0)["recall_at_1"]
    assert record["recall_at_1"] >= at_all - search_tuning.PLATEAU                # as good as probing every list


def test_an_explicit_value_wins_over_tuning(tmp_path):
    v, labels, _ = photos(60)
    g = Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", ef_search=300, vectors=v, labels=labels)
    assert g.search_setting()["value"] == 300 and g.search_setting()["origin"] == "override"
    g.add(v, [f"again {lab}" for lab in labels])                       # doubled: still not re-tuned
    assert Gallery.open(tmp_path / "g").search_setting()["value"] == 300
    tuned = Gallery.create(tmp_path / "t", DIM, index_method="HNSW32", vectors=v, labels=labels)
    assert tuned.search_setting()["origin"] == "tuned"
    tuned.set_search_params(ef_search=77)                              # -o IndexProcess.ef_search=77
    assert tuned.search_setting()["value"] == 77 and tuned.search_setting()["origin"] == "override"
    assert tuned.method.search_params(tuned.index, None).efSearch == 77
    assert tuned.refresh().search_setting()["value"] == 77


def test_a_gallery_written_before_tuning_keeps_its_value(tmp_path):
    v, labels, queries = photos(60)
    g = Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", vectors=v, labels=labels)
    path = os.path.join(layout.version_dir(g.index_dir, g.version), "manifest.json")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    del manifest["search_tuning"]
    manifest["index_params"]["ef_search"] = 512                          # what it was built with then
    manifest["manifest_sha256"] = layout.content_sha256(manifest, without=("manifest_sha256",))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    old = Gallery.open(tmp_path / "g")
    assert old.search_setting() == {"param": "ef_search", "value": 512, "origin": "default", "record": None}
    assert [row[0] for row in old.search(queries[:5], k=1)[0]] == [f"object {i}" for i in range(5)]


def test_auto_is_flat_for_a_small_gallery_and_approximate_once_it_grows(tmp_path, monkeypatch):
    v, labels, queries = photos(100)
    g = Gallery.create(tmp_path / "g", DIM, index_method="auto", vectors=v[:400], labels=labels[:400])
    assert len(g) < indexes.FLAT_BELOW and g.manifest["index_method"] == "Flat" and g.search_setting() is None
    monkeypatch.setattr(indexes, "FLAT_BELOW", 600)
    g.add(v[400:], labels[400:])
    g = Gallery.open(tmp_path / "g")
    assert g.manifest["index_method"] == indexes.AUTO_ABOVE and g.search_setting()["origin"] == "tuned"
    assert g.index.ntotal == len(v) == 800
    assert g.manifest["index_method"] == "IVFSQ8"                        # 8-bit lists, exact re-scoring
    assert g.method.lists_for(100_000) > 3 * g.method.lists_for(10_000)  # lists grow with the gallery (~sqrt)
    assert [row[0] for row in g.search(queries[:5], k=1)[0]] == [f"object {i}" for i in range(5)]


def test_auto_moves_to_fast_scan_lists_at_the_large_size_and_keeps_finding_its_objects(tmp_path, monkeypatch):
    v, labels, queries = photos(250)                                    # 2,000 vectors
    monkeypatch.setattr(indexes, "FLAT_BELOW", 600)
    monkeypatch.setattr(indexes, "LARGE_FROM", 1600)
    g = Gallery.create(tmp_path / "g", DIM, index_method="auto", vectors=v[:1000], labels=labels[:1000])
    assert g.manifest["index_method"] == "IVFSQ8"
    g.add(v[1000:], labels[1000:])                                      # past LARGE_FROM: rebuilt as fast-scan
    g = Gallery.open(tmp_path / "g")
    assert g.manifest["index_method"] == indexes.AUTO_LARGE == "IVFPQFS" and g.index.ntotal == len(v)
    assert g.search_setting()["origin"] == "tuned"
    found = [row[0] for row in g.search(queries, k=1)[0]]
    assert np.mean([f == f"object {i}" for i, f in enumerate(found)]) >= 0.95
    g.remove(labels=[f"object {i}" for i in range(100)])                 # still above half: no rebuild back
    assert Gallery.open(tmp_path / "g").manifest["index_method"] == "IVFPQFS"


def test_auto_method_by_size_with_hysteresis_and_no_fast_scan_where_the_store_lacks_it():
    large, flat = indexes.LARGE_FROM, indexes.FLAT_BELOW
    assert indexes.auto_method(flat - 1) == "Flat" and indexes.auto_method(flat) == "IVFSQ8"
    assert indexes.auto_method(large - 1, "IVFSQ8") == "IVFSQ8" and indexes.auto_method(large, "IVFSQ8") == "IVFPQFS"
    assert indexes.auto_method(large // 2, "IVFPQFS") == "IVFPQFS"          # not rebuilt back and forth
    assert indexes.auto_method(large // 2 - 1, "IVFPQFS") == "IVFSQ8"
    assert indexes.auto_method(10 * large, fast_scan=False) == "IVFSQ8"     # Milvus: no fast-scan index


def test_growing_past_the_fraction_tunes_again(tmp_path):
    v, labels, _ = photos(500)
    first = 2000
    g = Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", vectors=v[:first], labels=labels[:first])
    assert g.manifest["search_tuning"]["count"] == first
    small = int(first * search_tuning.RETUNE_GROWTH) - 100               # below the fraction: kept
    g.add(v[first:first + small], labels[first:first + small])
    assert g.manifest["search_tuning"]["count"] == first
    g.add(v[first + small:first + small + 200], labels[first + small:first + small + 200])
    assert g.manifest["search_tuning"]["count"] == first + small + 200 == len(g)
    assert Gallery.open(tmp_path / "g").manifest["search_tuning"]["count"] == len(g)
