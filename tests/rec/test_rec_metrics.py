"""Retrieval metrics against brute-force references; self-matches; refusing trivial setups."""
import numpy as np
import pytest

from ppshitu.rec.metrics import METRICS, check_not_trivial, retrieval_metrics
from ppshitu.errors import ConfigError


def _reference(feats, labels, uids):
    """Loop over queries, rank the others by similarity, compute each metric by its definition."""
    r1 = r3 = ap_sum = mapr_sum = 0.0
    n = 0
    for q in range(len(feats)):
        others = [g for g in range(len(feats)) if uids[g] != uids[q]]
        ranked = sorted(others, key=lambda g: -float(feats[q] @ feats[g]))
        rel = [labels[g] == labels[q] for g in ranked]
        npos = sum(rel)
        if npos == 0:
            continue
        n += 1
        r1 += rel[0]
        r3 += any(rel[:3])
        hits, precisions = 0, []
        for i, r in enumerate(rel, 1):
            if r:
                hits += 1
                precisions.append(hits / i)
        ap_sum += sum(precisions) / npos
        hits, total = 0, 0.0
        for i, r in enumerate(rel[:npos], 1):
            if r:
                hits += 1
                total += hits / i
        mapr_sum += total / npos
    return {"recall1": r1 / n, "recall3": r3 / n, "mAP": ap_sum / n, "MAP@R": mapr_sum / n}


def test_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 6)).astype("float32")
    labels = rng.integers(0, 6, 40)
    labels[-1] = 99  # a query with no positive: left out and counted
    uids = np.arange(40)
    metrics = METRICS.build_list([{"Recallk": {"topk": [1, 3]}}, {"mAP": {}}, {"MAPatR": {}}], "Metric.Eval")
    data = {"feats": feats, "labels": labels, "uids": uids}
    got = retrieval_metrics(metrics, data, data)
    ref = _reference(feats, labels, uids)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    assert got["no_positive"] == 1


def test_self_match_is_excluded_by_uid():
    # each image's nearest other image has the other label: recall@1 is exactly 0 once the image itself
    # is excluded, and would be a trivial 1.0 with the self-match counted
    feats = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], dtype="float32")
    labels = np.array([0, 0, 1, 1])
    data = {"feats": feats, "labels": labels, "uids": np.arange(4)}
    got = retrieval_metrics(METRICS.build_list([{"Recallk": {"topk": [1, 2]}}], "m"), data, data)
    assert got["recall1"] == 0.0
    assert got["recall2"] == 0.5  # q2's and q3's second nearest is each other; q0's and q1's is q3 / q2


def test_same_list_without_uids_is_refused():
    paths = ["a.jpg", "b.jpg"]
    with pytest.raises(ConfigError, match="self-matches cannot be excluded"):
        check_not_trivial(paths, paths, np.array([-1, -1]), np.array([-1, -1]))
    check_not_trivial(paths, paths, np.array([0, 1]), np.array([0, 1]))
    check_not_trivial(paths, ["c.jpg"], np.array([-1, -1]), np.array([-1]))


def test_metric_config_errors():
    with pytest.raises(ConfigError, match=r"unknown metric 'Recall'"):
        METRICS.build_list([{"Recall": {}}], "Metric.Eval")
    with pytest.raises(ConfigError, match=r"Metric.Eval\[0\].Recallk: topk\[0\] must be from 1 to 10000, got 0"):
        METRICS.build_list([{"Recallk": {"topk": [0]}}], "Metric.Eval")
