"""Query expansion at search time (IndexProcess.query_expansion, qe_alpha): no retraining, no change to the gallery.

    vectors = expand_queries(gallery, vectors, top_n=2, alpha=3.0)   # then gallery.search(vectors, k) as before

alpha-QE (Radenovic, Tolias, Chum 2018): each query is replaced by the L2-normalised sum of itself and its
`top_n` nearest gallery vectors, each weighted by max(cosine, 0) ** alpha (the query itself by 1): a query
drawn towards the views of the object it resembles most. One extra search of top_n and one get_vectors per
query batch; on FAISS and Milvus alike (only search and get_vectors are used). Measured with
bench/bench_query_options.py (what it gains and costs on held-out classes): the README says whether it is on.
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
