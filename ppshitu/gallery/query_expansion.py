"""Query expansion at search time (IndexProcess.query_expansion, qe_alpha): no retraining, no change to the gallery.

    vectors = expand_queries(gallery, vectors, top_n=2, alpha=3.0)   # then gallery.search(vectors, k) as before

alpha-QE (Radenovic, Tolias, Chum 2018): each query is replaced by the L2-normalised sum of itself and its
`top_n` nearest gallery vectors, each weighted by max(cosine, 0) ** alpha (the query itself by 1): a query
drawn towards the views of the object it resembles most. One extra search of top_n and one get_vectors per
query batch; on FAISS and Milvus alike (only search and get_vectors are used). Measured with
bench/bench_query_options.py (what it gains and costs on held-out classes): the README says whether it is on.

    labels, scores, ids = rerank_csls(gallery, vectors, k)                 # IndexProcess.rerank: csls

CSLS re-ranking of the top candidates (below): the order changes where a candidate's own neighbourhood is
dense; the scores answered stay the plain ones.
"""
import numpy as np

from .neighbours import to_score


def qe_weights(scores, higher_is_better, alpha):
    """Neighbour weights max(cosine, 0) ** alpha; an L2 gallery's squared distance d of unit vectors is
    cosine 1 - d / 2."""
    s = to_score(scores, True) if higher_is_better else 1.0 - np.asarray(scores, np.float64) / 2.0
    return np.maximum(s, 0.0) ** float(alpha)


def expand_queries(gallery, vectors, top_n, alpha=3.0):
    """float32 [n, D]: the queries expanded by their `top_n` gallery neighbours (0: the queries as given)."""
    vectors = np.asarray(vectors, np.float32)
    if not top_n or len(vectors) == 0 or len(gallery) == 0:
        return vectors
    _, scores, ids = gallery.search(vectors, int(top_n))
    ids = np.asarray(ids, np.int64)
    valid = ids >= 0
    if not valid.any():
        return vectors
    found, rows = np.unique(ids[valid], return_inverse=True)
    neighbour = np.zeros(ids.shape + (vectors.shape[1],), np.float32)
    neighbour[valid] = gallery.get_vectors(found)[rows]
    w = np.where(valid, qe_weights(np.asarray(scores), gallery.higher_is_better, alpha), 0.0).astype(np.float32)
    out = vectors + (w[:, :, None] * neighbour).sum(1)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


RERANK_METHODS = ("none", "csls")
RERANK_TOP = 10   # candidates re-ordered per query (at least the k asked for)
RERANK_KNN = 5    # gallery neighbours that measure a candidate's neighbourhood


def rerank_csls(gallery, vectors, k, top=RERANK_TOP, knn=RERANK_KNN):
    """gallery.search(vectors, k) with the top max(k, top) candidates re-ordered by CSLS (Conneau et al. 2018):
    2 * score(q, g) - r(g), r(g) the mean score of g to its `knn` nearest other gallery items, so an item
    near everything (a hub) no longer wins queries by being generic. The scores answered stay the plain
    ones (score_thres keeps its meaning); only the order changes."""
    vectors = np.asarray(vectors, np.float32)
    n = max(int(k), int(top))
    labels, scores, ids = gallery.search(vectors, n)
    ids = np.asarray(ids, np.int64)
    valid = ids >= 0
    if not valid.any():
        return labels, scores, ids
    found, rows = np.unique(ids[valid], return_inverse=True)
    _, ns, nids = gallery.search(gallery.get_vectors(found), knn + 1)
    own = np.asarray(nids) == found[:, None]
    ns = to_score(ns, gallery.higher_is_better)
    ns = np.where(own | (np.asarray(nids) < 0), np.nan, ns)
    r = np.zeros(len(found))
    has = np.isfinite(ns).any(1)
    r[has] = np.nanmean(ns[has], 1)  # an item alone in the gallery: no neighbourhood, r = 0
    rg = np.zeros(ids.shape)
    rg[valid] = r[rows]
    adj = np.where(valid, 2 * to_score(scores, gallery.higher_is_better) - rg, -np.inf)
    order = np.argsort(-adj, axis=1, kind="stable")[:, :int(k)]
    labels = [[row[j] for j in o] for row, o in zip(labels, order)]
    return labels, np.take_along_axis(np.asarray(scores), order, 1), np.take_along_axis(ids, order, 1)
