"""Scores that mean something? Centring and PCA-whitening learned on the gallery, measured on held-out queries
before anything is built on them (issue 27, part 3).

    .venv/bin/python bench/bench_whitening.py [--splits 10]

The pool of bench/bench_calibration.py (200 classes the demo rec model never saw, 10 views each, demo rec model;
made there and cached in bench/.cache/calibration). Each split: 120 classes in the gallery (4 views each; the other
6 are the known queries), 60 other classes as unknown queries. Each transform is fitted on the gallery's vectors
only (mean; covariance shrunk towards its mean eigenvalue by `s`, then the top `d` directions scaled to unit
variance; every vector L2-normalised after), applied to gallery and queries alike. Reported: recall@1 of the known
queries; AUC of their top-1 score when right against every wrong top-1 (known queries answered wrongly, and every
unknown query): how well one threshold can separate them; the mean gap between the two; and what a threshold
calibrated on the transformed gallery for precision 0.9 (ppshitu/gallery/calibrate.py) gives on the held-out
queries. Writes bench/results/bench_whitening.md and .json.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppshitu.gallery.calibrate import calibrate_vectors  # noqa: E402


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def centring(g):
    mu = g.mean(0)
    return lambda a: _unit(a - mu)


def whitening(g, dim, shrink):
    mu = g.mean(0)
    x = g - mu
    cov = x.T @ x / len(x)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    w, u = np.linalg.eigh(cov)
    top = np.argsort(-w)[:dim]
    proj = u[:, top] / np.sqrt(w[top] + 1e-9)
    return lambda a: _unit((a - mu) @ proj)


TRANSFORMS = [("raw cosine", lambda g: (lambda a: a)), ("centred on the gallery mean", centring),
              ("PCA-whitened, d=64, s=0.1", lambda g: whitening(g, 64, 0.1)),
              ("PCA-whitened, d=128, s=0.1", lambda g: whitening(g, 128, 0.1)),
              ("PCA-whitened, d=256, s=0.1", lambda g: whitening(g, 256, 0.1)),
              ("PCA-whitened, d=256, s=0.3", lambda g: whitening(g, 256, 0.3))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "bench_whitening"))
    args = p.parse_args()
    from ppshitu.utils.cpu import describe

    pools = glob.glob(os.path.join(ROOT, "bench", ".cache", "calibration", "pool_*.npz"))
    if not pools:
        import bench_calibration
        bench_calibration.pool()
        pools = glob.glob(os.path.join(ROOT, "bench", ".cache", "calibration", "pool_*.npz"))
    z = np.load(pools[0])
    vectors, classes, views = z["vectors"], z["classes"], z["views"]
    rng = np.random.default_rng(0)
    per = {name: [] for name, _ in TRANSFORMS}
    for _ in range(args.splits):
        order = rng.permutation(np.unique(classes))
        g = np.zeros(len(vectors), bool)
        known = np.zeros(len(vectors), bool)
        for c in order[:120]:
            vs = rng.permutation(10)
            g |= (classes == c) & np.isin(views, vs[:4])
            known |= (classes == c) & np.isin(views, vs[4:])
        unknown = np.isin(classes, order[120:180])
        for name, make in TRANSFORMS:
            f = make(vectors[g])
            gt, kt, ut = f(vectors[g]), f(vectors[known]), f(vectors[unknown])
            s = kt @ gt.T
            top, right = s.max(1), classes[g][s.argmax(1)] == classes[known]
            su = (ut @ gt.T).max(1)
            pos, neg = top[right], np.concatenate([top[~right], su])
            auc = float((pos[:, None] > neg[None, :]).mean())
            t = calibrate_vectors(gt, classes[g], True, 0.9)["score_thres"]
            tp, fpk, fpu = ((top >= t) & right).mean(), ((top >= t) & ~right).mean(), (su >= t).mean()
            per[name].append({"r1": float(right.mean()), "auc": auc, "gap": float(pos.mean() - neg.mean()),
                              "right": float(pos.mean()), "wrong": float(neg.mean()),
                              "precision_09": float(tp / max(tp + fpk + fpu, 1e-12)), "recall_09": float(tp)})
    rows = [{"transform": name, **{k: float(np.mean([r[k] for r in rs])) for k in rs[0]}} for name, rs in per.items()]
    cpu = describe()
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"cpu": cpu, "splits": args.splits, "rows": rows}, f, indent=1)
    raw = rows[0]
    best_auc = max(rows, key=lambda r: r["auc"])
    lines = ["# Centring and PCA-whitening learned on the gallery", "",
             f"`bench/bench_whitening.py` ({args.splits} splits; {cpu}). Demo rec model, 200 classes it never saw: "
             f"per split 120 in the gallery (4 views each, the transform fitted on these 480 vectors only), their "
             f"other 6 views as known queries, 60 other classes as unknown queries. AUC: a right top-1 score "
             f"against every wrong one (known queries answered wrongly, and unknown queries); *at 0.9*: a "
             f"threshold calibrated on the transformed gallery for precision 0.9, scored on the held-out queries.", "",
             "| scores | recall@1 | mean top-1 right / wrong | gap | AUC | at 0.9: precision | recall |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['transform']} | {r['r1']:.3f} | {r['right']:.3f} / {r['wrong']:.3f} | {r['gap']:.3f} | "
              f"{r['auc']:.3f} | {r['precision_09']:.3f} | {r['recall_09']:.3f} |" for r in rows]
    lines += ["", f"The gap between right and wrong scores grows ({raw['gap']:.3f} raw, up to "
              f"{max(r['gap'] for r in rows):.3f}), but a gap in other units is not separation: the AUC moves from "
              f"{raw['auc']:.3f} to at best {best_auc['auc']:.3f} ({best_auc['transform']}) while recall@1 goes from "
              f"{raw['r1']:.3f} to {min(r['r1'] for r in rows[2:]):.3f}-{max(r['r1'] for r in rows[2:]):.3f}. And a "
              f"whitening fitted on the gallery makes the gallery's items closer to each other than to new queries, "
              f"so a threshold calibrated on the transformed gallery misses its target on held-out queries "
              f"(precision {min(r['precision_09'] for r in rows[2:]):.3f}-{max(r['precision_09'] for r in rows[2:]):.3f} "
              f"for 0.9, raw {raw['precision_09']:.3f}). On this model and data nothing here is adopted: "
              f"whitening would need fitting on data other than the gallery it scores (cross-fitted), and a gain "
              f"in AUC worth its cost in recall@1, before it goes into the stores."]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
