"""Retrieval metrics (PaddleClas's `Metric.Eval`): Recall@k (CMC), mAP and MAP@R.

For every query the gallery is ranked by similarity (inner product of the
embeddings; cosine when they are normalized). Gallery items with the query's uid are
the query itself and are excluded, as is standard when the same list serves as query
and gallery (CUB's test split). Queries with no positive left in the gallery are
left out of every metric and counted (`no_positive`).

* recall{k}: the fraction of queries with a positive among the top k (CMC at k).
* mAP: the mean over queries of average precision over the whole ranking.
* MAP@R: as in Musgrave et al., "A Metric Learning Reality Check" (2020): with R the
  query's number of positives, (1/R) * sum_{i<=R} precision@i * relevant(i).
"""
import numpy as np

from ..config import Field
from ..errors import ConfigError
from ..registry import Registry

METRICS = Registry("metric")
_DESCENDING = Field(bool, doc="accepted for PaddleClas compatibility (scores are cosines: higher is nearer)")


@METRICS.register()
class Recallk:
    CONFIG_SCHEMA = {"topk": Field((int, list, tuple), min_value=1, max_value=10000,
                                   item=Field(int, min_value=1, max_value=10000)), "descending": _DESCENDING}

    def __init__(self, topk=(1, 5), descending=True):
        topk = [topk] if isinstance(topk, int) else list(topk)
        if not topk or not all(isinstance(k, int) and k > 0 for k in topk):
            raise ConfigError(f"Metric.Eval Recallk.topk must be positive ints, got {topk!r}")
        self.topk = topk

    def __call__(self, rel, npos):
        return {f"recall{k}": float(np.mean(rel[:, :k].any(axis=1))) for k in self.topk}


@METRICS.register()
class mAP:  # noqa: N801 -- PaddleClas's config name
    CONFIG_SCHEMA = {"descending": _DESCENDING}

    def __init__(self, descending=True):
        pass

    def __call__(self, rel, npos):
        precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
        return {"mAP": float(np.mean((precision * rel).sum(axis=1) / npos))}


@METRICS.register("MAP@R")
@METRICS.register()
class MAPatR:
    CONFIG_SCHEMA = {}

    def __init__(self):
        pass

    def __call__(self, rel, npos):
        ranks = np.arange(1, rel.shape[1] + 1)
        precision = np.cumsum(rel, axis=1) / ranks
        within_r = ranks[None, :] <= npos[:, None]
        return {"MAP@R": float(np.mean((precision * rel * within_r).sum(axis=1) / npos))}


def check_not_trivial(query_paths, gallery_paths, query_uids, gallery_uids):
    """Same images for query and gallery without uids would match every query to itself."""
    if list(query_paths) == list(gallery_paths) and (np.any(np.asarray(query_uids) < 0)
                                                     or np.any(np.asarray(gallery_uids) < 0)):
        raise ConfigError("DataLoader.Eval: Query and Gallery are the same images but the list has no uid column "
                          "(relpath label uid), so self-matches cannot be excluded and recall would be a trivial "
                          "1.0; add uids (dataset/prepare_cub.py writes them) or use disjoint query/gallery lists")


def relevance(query_feats, query_labels, query_uids, gallery_feats, gallery_labels, gallery_uids, chunk=512):
    """(rel, npos): rel[q, r] is True when the r-th ranked gallery item (self-matches removed) shares
    query q's label; npos[q] counts its positives. Queries without positives are dropped."""
    q = np.asarray(query_feats, np.float32)
    g = np.asarray(gallery_feats, np.float32)
    ql, gl = np.asarray(query_labels).reshape(-1), np.asarray(gallery_labels).reshape(-1)
    qu, gu = np.asarray(query_uids).reshape(-1), np.asarray(gallery_uids).reshape(-1)
    rels, npos = [], []
    for s in range(0, len(q), chunk):
        sim = q[s:s + chunk] @ g.T
        same_uid = (qu[s:s + chunk, None] == gu[None, :]) & (qu[s:s + chunk, None] >= 0)
        sim[same_uid] = -np.inf
        order = np.argsort(-sim, axis=1, kind="stable")
        rel = gl[order] == ql[s:s + chunk, None]
        rel &= ~np.take_along_axis(same_uid, order, axis=1)
        rels.append(rel)
        npos.append(rel.sum(axis=1))
    rel, npos = np.concatenate(rels), np.concatenate(npos)
    keep = npos > 0
    return rel[keep], npos[keep].astype(np.float64), int((~keep).sum())


def retrieval_metrics(metrics, query, gallery):
    """`query`/`gallery`: dicts with feats, labels, uids. Returns {metric: value, no_positive: n}."""
    rel, npos, dropped = relevance(query["feats"], query["labels"], query["uids"],
                                   gallery["feats"], gallery["labels"], gallery["uids"])
    if len(npos) == 0:
        raise ConfigError("DataLoader.Eval: no query has a same-label image in the gallery; nothing to measure")
    out = {}
    for metric in metrics:
        out.update(metric(rel, npos))
    out["no_positive"] = dropped
    return out
