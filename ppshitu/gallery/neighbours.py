"""Exact nearest neighbours among a gallery's own stored vectors, for calibration and the gallery doctor.

    items = gallery_arrays(gallery)                       # ids, labels, paths, vectors (store.get_vectors)
    near = scan(items.vectors, items.label_ids, higher_is_better, k=3, queries=None)
    near.same_score, near.same_index     # per query: its best item of the SAME label (itself excluded)
    near.other_score, near.other_index   # per query: its best item of ANOTHER label
    near.knn_score, near.knn_index       # per query: its k nearest items (itself excluded), best first

Brute force in blocks (queries x chunks of the gallery), so the answers are exact whatever the gallery's
index (HNSW, IVF, PQ) and the same on FAISS and Milvus: what is measured is the embedding, not the index.
Scores are "higher is better" here: the cosine for IP galleries (vectors L2-normalized as the store keeps
them), minus the squared distance for L2 ones (`to_score` / `from_score` convert).
"""
from dataclasses import dataclass

import numpy as np

QUERY_BLOCK = 256
GALLERY_CHUNK = 16384


@dataclass
class GalleryArrays:
    ids: np.ndarray          # int64 [n]
    labels: list             # str [n]
    paths: list              # str or None [n]
    vectors: np.ndarray      # float32 [n, D]
    label_names: list        # the distinct labels, sorted
    label_ids: np.ndarray    # int [n]: index into label_names

    def __len__(self):
        return len(self.ids)


def gallery_arrays(gallery):
    """Every item of a store (records() + get_vectors(): no image is embedded again)."""
    records = gallery.records()
    ids = np.asarray([r["id"] for r in records], np.int64)
    vectors = np.asarray(gallery.get_vectors(ids), np.float32) if len(ids) else \
        np.zeros((0, gallery.embedding_size), np.float32)
    labels = [r["label"] for r in records]
    names, label_ids = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True) \
        if labels else (np.zeros(0, str), np.zeros(0, np.int64))
    return GalleryArrays(ids, labels, [r.get("path") for r in records], vectors, [str(n) for n in names],
                         np.asarray(label_ids, np.int64))


def to_score(values, higher_is_better):
    """A store's scores as "higher is better" (L2 distances negated)."""
    values = np.asarray(values, np.float64)
    return values if higher_is_better else -values


def from_score(values, higher_is_better):
    return to_score(values, higher_is_better)  # (its own inverse)


def pair_scores(queries, gallery, higher_is_better, gallery_sq=None):
    """[q, n] scores, higher is better: dot products (IP), minus squared distances (L2)."""
    s = queries @ gallery.T
    if higher_is_better:
        return s
    q_sq = (queries * queries).sum(1)
    g_sq = (gallery * gallery).sum(1) if gallery_sq is None else gallery_sq
    return 2 * s - q_sq[:, None] - g_sq[None, :]


@dataclass
class Neighbours:
    queries: np.ndarray      # int [m]: the items searched (rows of the gallery)
    same_score: np.ndarray   # float64 [m], -inf when the label has no other item
    same_index: np.ndarray   # int [m], -1 when none
    other_score: np.ndarray  # float64 [m], -inf when every item has the query's label
    other_index: np.ndarray
    knn_score: np.ndarray    # float64 [m, k]
    knn_index: np.ndarray    # int [m, k] (-1 past the gallery's size)


def scan(vectors, label_ids, higher_is_better=True, k=0, queries=None, query_block=QUERY_BLOCK,
         gallery_chunk=GALLERY_CHUNK):
    """For each query row (default: every item), its best same-label item, its best other-label item and
    its k nearest items, itself excluded; exact (brute force). Ties go to the lower row."""
    v = np.ascontiguousarray(vectors, np.float32)
    lab = np.asarray(label_ids)
    n = len(v)
    queries = np.arange(n) if queries is None else np.asarray(queries, np.int64)
    m = len(queries)
    out = Neighbours(queries, np.full(m, -np.inf), np.full(m, -1, np.int64), np.full(m, -np.inf),
                     np.full(m, -1, np.int64), np.full((m, k), -np.inf), np.full((m, k), -1, np.int64))
    sq = (v * v).sum(1) if not higher_is_better else None
    for qs in range(0, m, query_block):
        rows = queries[qs:qs + query_block]
        q, ql = v[rows], lab[rows]
        best_s = np.full((len(rows), 2), -np.inf)
        best_i = np.full((len(rows), 2), -1, np.int64)
        top_s = np.full((len(rows), k), -np.inf)
        top_i = np.full((len(rows), k), -1, np.int64)
        for cs in range(0, n, gallery_chunk):
            cols = slice(cs, min(n, cs + gallery_chunk))
            s = pair_scores(q, v[cols], higher_is_better, None if sq is None else sq[cols]).astype(np.float64)
            self_col = rows - cs
            inside = (self_col >= 0) & (self_col < s.shape[1])
            s[np.nonzero(inside)[0], self_col[inside]] = -np.inf
            same = ql[:, None] == lab[cols][None, :]
            for j, mask in ((0, same), (1, ~same)):
                masked = np.where(mask, s, -np.inf)
                arg = masked.argmax(1)
                val = masked[np.arange(len(rows)), arg]
                better = val > best_s[:, j]
                best_s[better, j] = val[better]
                best_i[better, j] = arg[better] + cs
            if k:
                kk = min(k, s.shape[1])
                part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < s.shape[1] else \
                    np.tile(np.arange(s.shape[1]), (len(rows), 1))
                cand_s = np.concatenate([top_s, np.take_along_axis(s, part, 1)], 1)
                cand_i = np.concatenate([top_i, part + cs], 1)
                order = _order(cand_s, cand_i)[:, :k]
                top_s = np.take_along_axis(cand_s, order, 1)
                top_i = np.take_along_axis(cand_i, order, 1)
        sl = slice(qs, qs + len(rows))
        out.same_score[sl], out.same_index[sl] = best_s[:, 0], np.where(np.isfinite(best_s[:, 0]), best_i[:, 0], -1)
        out.other_score[sl], out.other_index[sl] = best_s[:, 1], np.where(np.isfinite(best_s[:, 1]), best_i[:, 1], -1)
        if k:
            out.knn_score[sl], out.knn_index[sl] = top_s, np.where(np.isfinite(top_s), top_i, -1)
    return out


def _order(scores, index):
    """Per row: positions sorted by score descending, then by index ascending (stable ties)."""
    key = np.where(index < 0, np.iinfo(np.int64).max, index)
    by_index = np.argsort(key, axis=1, kind="stable")
    s = np.take_along_axis(scores, by_index, 1)
    by_score = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(by_index, by_score, 1)


def label_centroids(vectors, label_ids, n_labels):
    """(sums [L, D], counts [L]) of the vectors per label."""
    sums = np.zeros((n_labels, vectors.shape[1]), np.float64)
    np.add.at(sums, label_ids, vectors)
    return sums, np.bincount(label_ids, minlength=n_labels)


def point_score(a, b, higher_is_better):
    """Row-wise score of a[i] against b[i] (higher is better): cosine of the directions (IP), minus the
    squared distance (L2)."""
    if higher_is_better:
        na = np.linalg.norm(a, axis=1)
        nb = np.linalg.norm(b, axis=1)
        return (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return -((a - b) ** 2).sum(1)
