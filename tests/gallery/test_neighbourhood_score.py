"""IndexProcess.score neighbourhood (ppshitu/gallery/scores.py): the top-1 score minus the mean of the query's
matches 2-10, calibrated beside the cosine on the gallery's own items (FAISS IP and L2, Milvus), taken by the
systems when the config asks for it, and what RecognitionSystem decides on."""
import numpy as np
import pytest

from ppshitu.gallery import calibrate as cal
from ppshitu.gallery.gallery import Gallery
from ppshitu.gallery.scores import DEFAULT_NEIGHBOURHOOD_THRES, neighbourhood_scores
from tests.gallery.gallery_helpers import DIM, class_vectors


def _unit(v):
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _gallery(tmp_path, name, vectors, labels, dist_type="IP"):
    return Gallery.create(tmp_path / name, vectors.shape[1], dist_type=dist_type, index_method="Flat",
                          vectors=vectors, labels=labels, paths=[f"{i}.jpg" for i in range(len(labels))])


def test_the_neighbourhood_threshold_reaches_its_target_on_held_out_queries_on_every_store(tmp_path):
    from ppshitu.gallery.milvus_store import MilvusStore

    # 30 classes x 4 in the gallery; held out: 4 more views of each, and 30 classes the gallery lacks
    views, labels = class_vectors(30, 8, seed=2, noise=0.9)
    views = _unit(views)
    in_gallery = np.tile(np.arange(8) < 4, 30)
    g_v, g_l = views[in_gallery], [lab for lab, keep in zip(labels, in_gallery) if keep]
    g = _gallery(tmp_path, "ip", g_v, g_l)
    result = cal.calibrate_gallery(g, 0.9)
    nb = result["neighbourhood"]
    assert nb["reached"] and 0 < nb["score_thres"] < 1 and nb["score_thres"] != result["score_thres"]

    known_l = np.asarray([lab for lab, keep in zip(labels, in_gallery) if not keep])
    unknown, _ = class_vectors(30, 4, seed=3, first=100, noise=0.9)
    queries = np.concatenate([views[~in_gallery], _unit(unknown)])
    found, scores, _ = g.search(queries, 10)
    norm = neighbourhood_scores(scores, True)
    answered = norm >= nb["score_thres"]
    right = np.zeros(len(queries), bool)
    right[:len(known_l)] = np.asarray([f[0] for f in found[:len(known_l)]]) == known_l
    # half the stream unknown, as calibrated
    tp = (answered & right)[:len(known_l)].mean()
    fp = (answered & ~right)[:len(known_l)].mean() + answered[len(known_l):].mean()
    assert tp / (tp + fp) >= 0.9 - 0.08 and tp > 0.2, (tp, fp)

    # L2: the same ranking, in distance units (unit vectors: twice the cosine's difference)
    l2 = cal.calibrate_gallery(_gallery(tmp_path, "l2", g_v, g_l, dist_type="L2"), 0.9)["neighbourhood"]
    assert l2["precision"] == nb["precision"] and l2["score_thres"] == pytest.approx(2 * nb["score_thres"], abs=1e-4)
    # Milvus: the same value from the same vectors, recorded and taken back through the store interface
    db = str(tmp_path / "g.db")
    m = MilvusStore.create(db, DIM, index_method="Flat", vectors=g_v, labels=g_l,
                           paths=[f"{i}.jpg" for i in range(len(g_l))])
    try:
        assert cal.score_thres_source({"score": "neighbourhood"}, m)[0] == DEFAULT_NEIGHBOURHOOD_THRES
        mr = cal.calibrate_gallery(m, 0.9)
        assert mr["neighbourhood"]["score_thres"] == pytest.approx(nb["score_thres"], abs=1e-5)
        cal.record_calibration(m, mr)
    finally:
        m.close()
    m = MilvusStore.open(db)
    try:
        value, source, _ = cal.score_thres_source({"score": "neighbourhood"}, m)
        assert value == mr["neighbourhood"]["score_thres"] and source.startswith("neighbourhood score calibrated")
        assert cal.score_thres_source({}, m)[0] == mr["score_thres"]  # the cosine's own stays the default's
        assert cal.score_thres_source({"score": "neighbourhood", "score_thres": 0.2}, m)[0] == 0.2
    finally:
        m.close()


class TableModel:
    """A stand-in rec model: an image's first pixel picks its vector from a table."""
    fingerprint = "standin"

    def __init__(self, table):
        self.table = np.asarray(table, np.float32)
        self.embedding_size = self.table.shape[1]

    def preprocess(self, rgb):
        return np.full((1, 1, 1), float(rgb[0, 0, 0]), np.float32)

    def predict_batch(self, batch):
        return self.table[np.asarray(batch)[:, 0, 0, 0].astype(int)]


def test_the_system_names_a_match_by_its_neighbourhood_score_when_asked(tmp_path):
    """Query 0 matches an item at cosine ~0.99 amid a crowd of others at ~0.97 (a weak neighbourhood score);
    query 1 matches an item at ~0.9 with nothing else near (a strong one). The cosine names both at 0.5;
    the neighbourhood score at 0.1 names only the second; its value is reported."""
    from ppshitu.system import UNKNOWN, RecognitionSystem

    rng = np.random.default_rng(0)
    e = np.eye(DIM, dtype=np.float32)
    crowd = _unit(e[0] + 0.15 * rng.standard_normal((11, DIM)) / np.sqrt(DIM))
    lone = _unit(e[1][None] + 0.02 * rng.standard_normal((1, DIM)))
    vectors = np.concatenate([crowd, lone])
    labels = [f"crowd {i}" for i in range(11)] + ["lone"]
    queries = _unit(np.stack([crowd[0] + 0.05 * rng.standard_normal(DIM) / np.sqrt(DIM),
                              0.9 * e[1] + 0.43 * e[2]]))
    g = _gallery(tmp_path, "g", vectors, labels)
    images = [np.full((16, 16, 3), i, np.uint8) for i in range(2)]
    results = {}
    for score, thres in (("cosine", 0.5), ("neighbourhood", 0.1)):
        system = RecognitionSystem(TableModel(queries), g, None, score_thres=thres, score=score)
        results[score] = [r[0] for r in system.recognize(images, [np.zeros((0, 5))] * 2)]
    assert [r["rec_docs"] for r in results["cosine"]] == ["crowd 0", "lone"]
    assert [r["rec_docs"] for r in results["neighbourhood"]] == [UNKNOWN, "lone"]
    crowded, alone = results["neighbourhood"]
    assert crowded["rec_scores"] > alone["rec_scores"]  # the cosine alone would rank them the other way
    assert crowded["rec_neighbourhood"] < 0.1 <= alone["rec_neighbourhood"]
    assert len(crowded["topk"]) == 5 and crowded["nearest_docs"] == "crowd 0"  # return_k, not the 10 searched
    with pytest.raises(Exception, match="IndexProcess.score"):
        RecognitionSystem(TableModel(queries), g, None, score="margin")
