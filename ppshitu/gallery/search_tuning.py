"""Search settings tuned on the gallery's own vectors: the smallest HNSW efSearch / IVF nprobe whose
recall@1 against exact search reaches TARGET_RECALL on queries made from the gallery itself.

A setting fitted once on random vectors (where every neighbour is almost equally far) is ~10x slower
than a real gallery needs; the right value depends on how the gallery's own vectors cluster, so it is
measured on them, at build and again after the gallery has grown by RETUNE_GROWTH since the last
tuning (gallery.py), and kept in the manifest's `search_tuning`:

    {"param": "ef_search", "value": 48, "origin": "tuned", "recall_at_1": 0.991, "target": 0.98, "reached": true,
     "queries": 1000, "query_model": "perturbed", "count": 100000, "seconds": 3.1}

`origin` is "tuned", or "override" when the gallery was created with an explicit ef_search / nprobe
(IndexProcess.ef_search at build: kept, never re-tuned). A gallery written before tuning existed has
no record and keeps the value its index_params hold ("default"). At query time
`-o IndexProcess.ef_search=N` still wins (Gallery.set_search_params).

The queries are the gallery's own vectors, used as a query is (a new photo of an indexed object,
whose other photos are in the gallery), a different way for each index, each checked against truly
held-out photos (the generator's 11th view of an object whose 10 others are indexed) on
bench/realistic_vectors.py's galleries:
  IVF (nprobe): leave-one-out. A sample of gallery vectors, each searched against the rest (its own hit
      left out, in the approximate and the exact search alike): which lists are probed depends only on
      the query and the centroids, so this is a held-out photo exactly; it matched held-out recall within
      0.5 point (20k vectors, nprobe 2-16; and the tests' clustered 32-d galleries).
  HNSW (ef_search): perturbed. A left-out vector is still a node of the graph, whose links lead straight
      to its neighbours: leave-one-out overestimated recall by 1-4 points (50k: 0.973 vs 0.948 held out
      at ef 64). Each sampled vector x of label L is moved off its node by half a photo-to-photo
      difference of its own object, q = x + (y - z) / 2 (y, z two vectors of L; a label with one
      vector borrows the difference from a label with two or more), in the directions the embeddings
      really vary in (isotropic noise points off the data's subspace, a case random-vector benchmarks
      showed far harder than real queries). At 50k it tracked held-out recall from just below:
      0.950 / 0.963 / 0.978 / 0.988 vs 0.948 / 0.969 / 0.981 / 0.989 held out at ef 64 / 128 / 256 / 512.
      With no two vectors sharing a label it falls back to leave-one-out.
Recall is counted by score: the approximate top-1 counts as found when its score equals the exact
top-1's (ties between duplicate vectors are not misses).
"""
import time

import numpy as np

from ..errors import ConfigError

TARGET_RECALL = 0.98     # IndexProcess.tune_recall's default; a gallery keeps its own in the manifest
RETUNE_GROWTH = 0.25     # re-tune once the gallery holds 25 % more vectors than at its last tuning
SAMPLE = 1000            # queries per tuning: recall 0.98 is measured to +-0.009 (2 standard errors)
MIN_VECTORS = 2
EF_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
NPROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
SCORE_TOL = 1e-4         # float32 scores of one vector through two index types differ in the last bits
# A method whose recall levels off below the target (IVFPQFS: the true top-1 outside its re-scored candidate
# pool for ~2 % of 100k realistic queries, 0.978 from nprobe 48 to all 1264 lists) gets the smallest value
# within PLATEAU of its best, not the largest step (nprobe = nlist: exact-search cost for no recall).
PLATEAU = 0.003


def tunable_param(method):
    """'ef_search' / 'nprobe' for a method that has a search-time knob; None for exact search."""
    for name in ("ef_search", "nprobe"):
        if hasattr(method, name):
            return name
    return None


def check_target(value, where="IndexProcess.tune_recall"):
    """The recall@1 target as a float in (0, 1); anything else refused naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{where} must be a number above 0 and below 1 (the recall@1 vs exact search that the "
                         f"tuned ef_search / nprobe must reach, e.g. 0.98 or 0.95), got {value!r}")
    return float(value)


def target_of(manifest):
    """The gallery's recall@1 target: the manifest's tune_recall (set at build / by an append), else the default."""
    return float(manifest.get("tune_recall", TARGET_RECALL))


def needs_tuning(manifest, count, method):
    """Whether an update that leaves `count` vectors should (re)tune the search setting."""
    if tunable_param(method) is None or count < MIN_VECTORS:
        return False
    record = manifest.get("search_tuning")
    if record is None:
        return True  # a new gallery, or one written before tuning existed: its first update tunes it
    if record.get("origin") == "override":
        return False
    if float(record.get("target", TARGET_RECALL)) != target_of(manifest):
        return True  # an append asked for another recall target
    return count >= (1 + RETUNE_GROWTH) * max(1, int(record.get("count", 0)))


def sample_rows(n, sample, seed=0):
    return np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))


def without_self(scores, ids, own):
    """The best score per row that is not the row's own id (`own`): the leave-one-out top-1."""
    first_is_self = ids[:, 0] == own
    return np.where(first_is_self, scores[:, 1], scores[:, 0])


def exact_loo_top1(vectors, rows, higher_is_better):
    """Exact leave-one-out top-1 scores of vectors[rows] against the rest of `vectors`."""
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT if higher_is_better else faiss.METRIC_L2
    queries = np.ascontiguousarray(vectors[rows], np.float32)
    d, i = faiss.knn(queries, np.ascontiguousarray(vectors, np.float32), 2, metric=metric)
    return without_self(d, i, rows)


def perturbed_queries(vectors, labels, rows, seed=0):
    """x + (y - z) / 2 per sampled row (module docstring), or None when no label has two vectors."""
    rng = np.random.default_rng(seed + 1)
    groups = {}
    for row, lab in enumerate(labels):
        groups.setdefault(lab, []).append(row)
    pairs = [members for members in groups.values() if len(members) >= 2]
    if not pairs:
        return None
    q = np.asarray(vectors[rows], np.float32).copy()
    for i, row in enumerate(rows):
        own = groups[labels[row]]
        y, z = rng.choice(own if len(own) >= 2 else pairs[rng.integers(len(pairs))], size=2, replace=False)
        q[i] += (np.asarray(vectors[y], np.float32) - np.asarray(vectors[z], np.float32)) / 2
    return q


def recall_at_1(found, exact, higher_is_better):
    ok = found >= exact - SCORE_TOL if higher_is_better else found <= exact + SCORE_TOL
    return float(np.mean(ok))


def steps_for(param, limit=None):
    steps = EF_STEPS if param == "ef_search" else NPROBE_STEPS
    if limit is None:
        return list(steps)
    return [s for s in steps if s < limit] + [limit]


def tune(search_top2, vectors, ids, labels, higher_is_better, param, limit=None, target=TARGET_RECALL,
         sample=SAMPLE, seed=0):
    """The search-tuning record (module docstring). `search_top2(queries, value)` -> (scores, ids) [m, 2] with
    the knob `param` at `value`; `ids` / `labels`: the gallery ids and labels of `vectors`' rows; `limit`: the
    knob's largest useful value (IVF: nlist)."""
    import faiss

    t = time.perf_counter()
    rows = sample_rows(len(vectors), sample, seed)
    queries = perturbed_queries(vectors, labels, rows, seed) if param == "ef_search" else None
    if queries is None:
        model, queries = "leave-one-out", np.ascontiguousarray(vectors[rows], np.float32)
        exact = exact_loo_top1(vectors, rows, higher_is_better)
        found = lambda value: without_self(*search_top2(queries, value), ids[rows])  # noqa: E731
    else:
        if higher_is_better:  # (an IP gallery holds unit vectors: so are its queries)
            queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        model = "perturbed"
        metric = faiss.METRIC_INNER_PRODUCT if higher_is_better else faiss.METRIC_L2
        exact = faiss.knn(queries, np.ascontiguousarray(vectors, np.float32), 1, metric=metric)[0][:, 0]
        found = lambda value: search_top2(queries, value)[0][:, 0]  # noqa: E731
    value, recall, reached, seen = None, 0.0, False, []
    for value in steps_for(param, limit):
        recall = recall_at_1(found(value), exact, higher_is_better)
        seen.append((value, recall))
        if recall >= target:
            reached = True
            break
    if not reached:  # levelled off below the target: the smallest value on the plateau, not the largest step
        best = max(r for _, r in seen)
        value, recall = next((v, r) for v, r in seen if r >= best - PLATEAU)
    return {"param": param, "value": int(value), "origin": "tuned", "recall_at_1": round(recall, 4),
            "target": target, "reached": reached, "queries": len(rows), "query_model": model,
            "count": len(vectors), "seconds": round(time.perf_counter() - t, 2)}


def describe(setting):
    """One line for build output / doctor: 'ef_search=48 (tuned: recall@1 0.991 vs exact on 1000 perturbed
    queries at 100000 vectors)'."""
    if setting is None:
        return "exact search"
    text = f"{setting['param']}={setting['value']} ({setting['origin']}"
    rec = setting.get("record")
    if setting["origin"] == "tuned" and rec:
        text += (f": recall@1 {rec['recall_at_1']:.3f} vs exact on {rec['queries']} {rec['query_model']} "
                 f"queries at {rec['count']} vectors" + ("" if rec.get("reached", True) else
                                                         f", below the {rec['target']} target: its plateau"))
    return text + ")"

