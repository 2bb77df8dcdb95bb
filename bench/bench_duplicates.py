"""Duplicate finding measured on sets nobody tuned for: tools/find_duplicates.py's verified rule
(calibrated at run time on each folder) side by side with pHash and the embedding, each of those at
its BEST threshold for the set (chosen with the truth: upper bounds for them).

    .venv/bin/python bench/bench_duplicates.py [-c configs/inference/inference_general.yaml] [--quick]
        [--sets dev,held-out,confusers] [--scale N] [--merge]

The sets (bench/dup_sets.py): `dev` (the set the verifier and its calibration were built on), `held-out`
(other photographs and designed images, other edit ranges, up to three copies each: built and looked
at once, never used to choose anything), and `confusers` (pairs of similar-but-different images from
the held-out sources: crops sharing less than half their area, neighbouring frames, colour variants of
one design; every pair is a negative). Each is written as JPEG files into a fresh folder and indexed
as a user's folder is; find_duplicates then calibrates its rule on that folder (its cache pointed at
a temporary folder, so nothing is reused between sets).

Scores are over pairs: a pair is predicted duplicate when the method puts the two images in one group
(what the user is shown: for find_duplicates, its duplicate tier); true when they come from the same
original. pHash: ImageHash's 64-bit phash, all pairs; embedding: the gallery's k-NN pairs by cosine;
each swept over its threshold and grouping (pairs alone, or connected components), the best F1 taken.
`previous default` is the rule find_duplicates used before (cosine >= 0.970, or cosine >= 0.650 and
pHash distance <= 14). On the confusers, pHash and the embedding use their best held-out thresholds.
Times: seconds per 1,000 images on this machine, all steps (decode, embed, index; calibration;
candidates, features, verification, grouping; or decode + hash + all pairs).
`--scale N`: a folder of N images (held-out-style photos and copies) timed end to end.
Writes bench/results/bench_duplicates.md and .json (a subset of the sets: bench_duplicates_<sets>.*; with
`--merge`, the subset replaces its sets in the recorded bench_duplicates.json and the .md is re-rendered).
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ppshitu.cli import config_parser, load_cli_config  # noqa: E402
from ppshitu.schemas import INFER_SCHEMA  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
RESULTS = os.path.join(ROOT, "bench", "results")
PREVIOUS = (0.970, 0.650, 14)
SETS = {"dev": ("dev_set", 11), "dev-hard": ("dev_hard_set", 12), "held-out": ("held_out_set", 7575)}
# name: (seed, sources in dup_sets, first object class, designed backgrounds, pairs per kind); the confusers ask for 67
# of each kind (about 200 pairs, for resolution at the 2 % target): the held-out photos hold 54 crop pairs that
# share less than half their area with each other and every other crop (seed 3131's draw: 188 pairs, 4141's: 190)
CONFUSERS = {"confusers": (4141, "CONFUSER_SOURCES", 300, True, 67),
             "dev-confusers": (5, "DEV_SOURCES", 0, "sources", 40)}
# Confuser draws so far: 777 (first look), 8888, 9191 (6 of its 120 pairs did not differ visibly and 5 were called
# duplicates, 4 of those invisible: recorded as CONFUSERS_9191). The generator now redraws such a pair
# (dup_sets.visible_pair) and 7373 is a fresh draw, run at a51456b (ppshitu/library unchanged since a9bbb6e); then
# 3131 (fourth look) and 4141 (fifth), each drawn after the change the look before motivated.
CONFUSERS_9191 = {"pairs": 120, "called": 5, "invisible": 6, "invisible_called": 4}
# The third look (recorded; finder at 6e57c38): held-out seed 5151 and confusers seed 7373 (120 pairs) with the
# calibration's local changes drawn from 1-12 % of the area. The confusers' folder calibration took the 10 % cap
# (its changes all disagreed in >= 20 % of a tile) and 3 of 120 passed (2 colour_variant, 1 neighbouring_frames).
# What changed after it, chosen on dev, dev-hard and dev-confusers draws (seeds 5, 7) only: local changes from 0.2 %
# of the area (dupcalibrate.LOCAL_AREA); held-out (6464) and confusers (3131, ~200 pairs) were then drawn afresh.
THIRD_LOOK = {"precision": 1.000, "recall": 0.934, "f1": 0.966, "phash_f1": 0.853, "seed": 5151,
              "confusers": {"seed": 7373, "pairs": 120, "called": 3, "by_kind": "2 colour_variant, 1 neighbouring_frames",
                            "max_local": 0.10}}
# The fourth look (recorded; finder at 6805735, local changes from 0.2 %): held-out seed 6464 and confusers seed 3131
# (188 pairs). After it, motivated on dev (its calibration fell back: changes too small for the comparison grid passed
# every rule and held every rule below the target), such unseen changes are left out of the rule choice
# (dupcalibrate._unseen); held-out (7575) and confusers (4141) drawn afresh.
FOURTH_LOOK = {"precision": 1.000, "recall": 0.850, "f1": 0.919, "phash_f1": 0.844, "seed": 6464,
               "confusers": {"seed": 3131, "pairs": 188, "called": 0, "max_local": 0.03}}
# The held-out set and the confusers were first drawn with seeds 20250 and 777 and looked at once, with an
# earlier calibration (neighbour pairs passing a fixed "certain" rule left out; milder edits; large
# local changes only; clipped values left out of the comparison). That look, recorded here, is why the
# numbers below come from fresh draws (seeds 4242 and 8888) after the changes that dev-hard motivated;
# it also found scikit-image's "cat" to be "chelsea" (the same photo under two families), since removed.
# The run before this verifier (commit 25e274f, recorded; held-out seed 4242, confusers seed 8888): its held-out
# scores and confusers passing.
PREVIOUS_RUN = {"precision": 1.000, "recall": 0.860, "f1": 0.924, "phash_f1": 0.833, "confusers": 8}
# The second look (recorded): this verifier on the seed-4242 held-out set while calibration still took the
# strictest rule within a point of the best recall. It took >= 30 inliers and 0 % of a tile (with the 3 x 3 test
# most edited copies disagree nowhere, so the strictest sat at their edge): precision 1.000, recall 0.792, F1
# 0.884 (dev-hard had dropped too, 0.957 -> 0.910). The choice now takes the loosest of the equally precise and
# recalled rules (MAX_LOCAL bounding it), and the held-out set and confusers were drawn afresh (5151, 9191).
SECOND_LOOK = {"precision": 1.000, "recall": 0.792, "f1": 0.884, "phash_f1": 0.833, "seed": 4242}
FIRST_LOOK = {"held-out": {"precision": 0.827, "recall": 0.629, "f1": 0.715, "phash_f1": 0.839},
              "confusers": {"share": 0.050, "pairs": 6, "of": 120}}


def truth_pairs(rows):
    from ppshitu.library.photos import duplicate_pairs

    names = [r["name"] for r in rows]
    return {tuple(sorted((names[a], names[b]))) for a, b in duplicate_pairs([r["family"] for r in rows])}


def scores(pred, truth):
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-12), 4),
            "predicted_pairs": len(pred), "true_pairs": len(truth)}


def edit_recall(pred, rows):
    """Recall of (original, edited copy) pairs, per edit."""
    orig = {r["family"]: r["name"] for r in rows if r["edit"] is None}
    out = {}
    for r in rows:
        if r["edit"] is None:
            continue
        pair = tuple(sorted((orig[r["family"]], r["name"])))
        hit, n = out.get(r["edit"], (0, 0))
        out[r["edit"]] = (hit + (pair in pred), n + 1)
    return {k: round(h / n, 3) for k, (h, n) in sorted(out.items())}


def components(pairs):
    """All pairs within the connected components of `pairs` (what single-linkage grouping shows)."""
    from ppshitu.library.duplicates import UnionFind

    names = sorted({n for p in pairs for n in p})
    idx = {n: i for i, n in enumerate(names)}
    uf = UnionFind(len(names))
    for a, b in pairs:
        uf.union(idx[a], idx[b])
    out = set()
    for g in uf.groups():
        ns = sorted(names[i] for i in g)
        out |= {(a, b) for x, a in enumerate(ns) for b in ns[x + 1:]}
    return out


def best_threshold(scored, truth, higher_is_better, thresholds):
    """(threshold, grouping, pairs, scores) of the best F1 over thresholds x {pairs, components}."""
    best = None
    for t in thresholds:
        direct = {p for p, s in scored.items() if (s >= t if higher_is_better else s <= t)}
        for grouping, pred in (("pairs", direct), ("components", components(direct))):
            sc = scores(pred, truth)
            if best is None or sc["f1"] > best[3]["f1"]:
                best = (t, grouping, pred, sc)
    return best


# ------------------------------------------------------------------ the methods
def run_ppshitu(cfg, rec, folder, work, k=10, workers=2):
    """Index the folder, then find_duplicates' default (calibrated, verified) rule; also the k-NN pairs'
    cosines (for the embedding baseline). Returns (pred pairs, knn {pair: cos}, info)."""
    from ppshitu.library import common, dupcalibrate
    from ppshitu.library.duplicates import FeatureCache, candidate_pairs, find_duplicates, gallery_items, pairs_of
    from ppshitu.library.folder import read_state, sync_folder

    cfg["IndexProcess"]["index_dir"] = os.path.join(work, "index")
    t0 = time.perf_counter()
    sync_folder(cfg, folder, rec=rec)
    t_index = time.perf_counter() - t0
    gallery = common.open_store(cfg.IndexProcess, rec)
    state = read_state(cfg.IndexProcess)
    items, vectors = gallery_items(cfg, gallery, state, folder, rec=rec)
    features = FeatureCache(items)
    said = io.StringIO()
    t0 = time.perf_counter()
    cal = dupcalibrate.calibrate_folder(items, vectors, gallery, rec, features, 0.95,
                                        say=lambda s: print(s, file=said), workers=workers)
    t_cal = time.perf_counter() - t0
    rule, floor = dupcalibrate.rule_of(cal)
    t0 = time.perf_counter()
    report = find_duplicates(items, vectors, gallery, rule, floor, k, features=features, workers=workers,
                             calibration=cal)
    t_find = time.perf_counter() - t0
    pred = {tuple(sorted((os.path.basename(a), os.path.basename(b)))) for a, b in pairs_of(report["groups"])}
    similar = {tuple(sorted((os.path.basename(a), os.path.basename(b))))
               for a, b in pairs_of(report["groups"], tier="similar")}
    ids = [it["id"] for it in items]
    knn = {tuple(sorted((os.path.basename(items[i]["path"]), os.path.basename(items[j]["path"])))): c
           for (i, j), c in candidate_pairs(gallery, vectors, ids, -1.0, k).items()}
    info = {"index_s": t_index, "calibration_s": t_cal, "find_s": t_find, "calibration": cal,
            "calibration_text": said.getvalue().strip(), "rule": rule.as_dict(), "floor": floor,
            "candidates": report["candidates"], "verified_pairs": report["verified_pairs"],
            "features_computed": report["features_computed"], "seconds": report["seconds"],
            "similar_pairs": len(similar), "n": len(items)}
    return pred, knn, info


def phash_all(rows):
    import imagehash
    from PIL import Image

    t = time.perf_counter()
    bits = []
    for r in rows:
        with Image.open(r["file"]) as im:
            bits.append(imagehash.phash(im.convert("RGB")).hash.flatten())
    b = np.asarray(bits, bool)
    names = [r["name"] for r in rows]
    dist = (b[:, None, :] != b[None, :, :]).sum(-1)
    iu = np.triu_indices(len(rows), 1)
    scored = {tuple(sorted((names[i], names[j]))): int(dist[i, j]) for i, j in zip(*iu)}
    return scored, time.perf_counter() - t


def previous_rule(knn, ph):
    a, c, h = PREVIOUS
    return components({p for p, cos in knn.items() if cos >= a or (cos >= c and ph.get(p, 99) <= h)})


# ------------------------------------------------------------------ one set
def measure_set(name, rows, folder, cfg, rec, work, k, workers):
    truth = truth_pairs(rows)
    n = len(rows)
    per_k = 1000.0 / n
    pred, knn, info = run_ppshitu(cfg, rec, folder, work, k, workers)
    ph, ph_s = phash_all(rows)
    t_emb, g_emb, pred_emb, sc_emb = best_threshold(knn, truth, True, np.round(np.arange(0.80, 0.996, 0.005), 3))
    t_ph, g_ph, pred_ph, sc_ph = best_threshold(ph, truth, False, range(0, 25))
    prev = previous_rule(knn, ph)
    ours_s = info["index_s"] + info["calibration_s"] + info["find_s"]
    result = {
        "set": name, "images": n, "true_pairs": len(truth), "originals": len({r["family"] for r in rows}),
        "edited_copies": sum(r["edit"] is not None for r in rows),
        "rows": [
            {"method": "ppshitu find_duplicates (verified, calibrated on the folder)",
             "threshold": info["rule"]["text"], **scores(pred, truth), "recall_by_edit": edit_recall(pred, rows),
             "s_per_1000": round(ours_s * per_k, 1),
             "time_split_s_per_1000": {"index": round(info["index_s"] * per_k, 1),
                                       "calibration": round(info["calibration_s"] * per_k, 1),
                                       "find": round(info["find_s"] * per_k, 1)}},
            {"method": "pHash at its best threshold (upper bound)", "threshold": f"Hamming <= {t_ph} ({g_ph})",
             **sc_ph, "recall_by_edit": edit_recall(pred_ph, rows), "s_per_1000": round(ph_s * per_k, 1)},
            {"method": "embedding at its best threshold (upper bound)", "threshold": f"cosine >= {t_emb} ({g_emb})",
             **sc_emb, "recall_by_edit": edit_recall(pred_emb, rows), "s_per_1000": round(info["index_s"] * per_k, 1)},
            {"method": "previous default (embedding + pHash, fixed constants)",
             "threshold": "cos >= 0.970, or cos >= 0.650 and pHash <= 14", **scores(prev, truth),
             "recall_by_edit": edit_recall(prev, rows), "s_per_1000": round((info["index_s"] + ph_s) * per_k, 1)},
        ],
        "best": {"phash": [int(t_ph), g_ph], "embedding": [float(t_emb), g_emb]},
        "ppshitu": {k_: v for k_, v in info.items() if k_ not in ("calibration",)},
        "calibration": info["calibration"],
        "false_pairs": sorted(pred - truth)[:20], "missed_pairs": len(truth - pred),
    }
    return result


def measure_confusers(pairs_rows, rows, folder, cfg, rec, work, k, workers, best):
    n_pairs = len(pairs_rows)
    pred, knn, info = run_ppshitu(cfg, rec, folder, work, k, workers)
    ph, _ = phash_all(rows)
    t_ph, g_ph = best["phash"]
    t_emb, g_emb = best["embedding"]
    ph_pred = {p for p, d in ph.items() if d <= t_ph}
    emb_pred = {p for p, c in knn.items() if c >= t_emb}
    ph_pred = components(ph_pred) if g_ph == "components" else ph_pred
    emb_pred = components(emb_pred) if g_emb == "components" else emb_pred
    prev = previous_rule(knn, ph)
    kinds = sorted({r["kind"] for r in pairs_rows})

    n_visible = sum(r.get("visible", True) for r in pairs_rows)

    def called(pred):
        by = {kd: 0 for kd in kinds}
        hits = [r for r in pairs_rows if tuple(sorted((r["a"], r["b"]))) in pred]
        for r in hits:
            by[r["kind"]] += 1
        total, seen = len(hits), sum(r.get("visible", True) for r in hits)
        return {"pairs_called_duplicates": total, "share": round(total / n_pairs, 4), "by_kind": by,
                "visible_called": seen, "visible_share": round(seen / max(n_visible, 1), 4),
                "called_pairs": [[r["kind"], r["a"], r["b"], r.get("visible", True)] for r in hits][:40],
                "duplicate_pairs_reported_in_folder": len(pred)}
    return {"pairs": n_pairs, "images": len(rows), "visibly_different_pairs": n_visible, "per_kind": {kd: sum(r["kind"] == kd for r in pairs_rows)
                                                                 for kd in kinds},
            "rows": [{"method": "ppshitu find_duplicates (verified, calibrated on the folder)",
                      "threshold": info["rule"]["text"], **called(pred)},
                     {"method": "pHash at its best held-out threshold", "threshold": f"Hamming <= {t_ph} ({g_ph})",
                      **called(ph_pred)},
                     {"method": "embedding at its best held-out threshold", "threshold": f"cosine >= {t_emb} ({g_emb})",
                      **called(emb_pred)},
                     {"method": "previous default", "threshold": "cos >= 0.970, or cos >= 0.650 and pHash <= 14",
                      **called(prev)}],
            "ppshitu": {k_: v for k_, v in info.items() if k_ not in ("calibration",)}, "calibration": info["calibration"],
            "similar_pairs": info["similar_pairs"]}


def _cpu_seconds():
    """User + system CPU seconds of this process, all threads (on a machine shared with other jobs the wall
    time says more about them than about us)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_scale_folder(n, folder, rng):
    """Write a folder of n images as a photo library is, mostly distinct pictures (designed images drawn by
    dataset/synthetic.py -- objects on backgrounds -- and small crops of the photos), a fifth of them with an
    edited copy (held-out edits); returns the rows (bench_duplicates_speed times tools/find_duplicates.py on it)."""
    import dup_sets

    photos_ = [dup_sets.load_any(s) for s in dup_sets.CONFUSER_SOURCES + dup_sets.DEV_SOURCES]
    items = []
    while len(items) < n:
        side = int(rng.integers(256, 385))
        if rng.random() < 0.7:
            img, _, _ = dup_sets.designed(rng, (side * 3 // 4, side), np.arange(0, 600))
        else:   # a crop of 15-30 % of a photo's side: distinct from most others
            src = photos_[int(rng.integers(len(photos_)))]
            h, w = src.shape[:2]
            s = rng.uniform(0.15, 0.3)
            cw, ch = max(16, int(w * s)), max(16, int(h * s))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = dup_sets._fit(src[y:y + ch, x:x + cw], side)
        items.append({"rgb": img, "family": len(items), "edit": None, "source": "scale"})
        if rng.random() < 0.2 and len(items) < n:
            kind = str(rng.choice(dup_sets.HELD_OUT_EDITS))
            items.append({"rgb": dup_sets.held_out_edit(img, kind, rng), "family": items[-1]["family"], "edit": kind,
                          "source": "scale"})
    return dup_sets.write_items(items, folder, rng)


def measure_scale(n, cfg, rec, work, k, workers, rng):
    """A folder of n images (write_scale_folder) timed end to end."""
    folder = os.path.join(work, "scale")
    rows = write_scale_folder(n, folder, rng)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    pred, _, info = run_ppshitu(cfg, rec, folder, os.path.join(work, "scale_index"), k, workers)
    total, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    # (no scores: crops of one photo may share most of their area, so the families are no truth here)
    return {"images": len(rows), "seconds_total": round(total, 1), "cpu_seconds": round(cpu, 1),
            "load_avg": [round(x, 1) for x in os.getloadavg()], "index_s": round(info["index_s"], 1),
            "calibration_s": round(info["calibration_s"], 1), "find_s": round(info["find_s"], 1),
            "find_split": info["seconds"], "candidates": info["candidates"], "verified_pairs": info["verified_pairs"],
            "features_computed": info["features_computed"], "duplicate_pairs": len(pred)}


# ------------------------------------------------------------------ main
def main(argv=None):
    import dup_sets

    p = config_parser(__doc__.splitlines()[0])
    p.set_defaults(config=CONFIG)
    for a in p._actions:
        if a.dest == "config":
            a.required = False
    p.add_argument("--quick", action="store_true", help="small sets (smoke run)")
    p.add_argument("--sets", default="dev,dev-hard,held-out,confusers")
    p.add_argument("--scale", type=int, default=0, help="also time a folder of this many images")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--merge", action="store_true",
                   help="put the sets run into the full results (bench_duplicates.json) in place of their recorded "
                        "rows, keep the other sets as recorded, and re-render it")
    args = p.parse_args(argv)
    if args.merge and args.quick:
        raise SystemExit("--merge replaces sets in the full run's results: not with --quick")
    cfg = load_cli_config(args, INFER_SCHEMA)
    from ppshitu.library import common
    from ppshitu.utils.cpu import describe

    common.setup_tool(cfg)
    rec, _ = common.predictors(cfg, detect=False)
    fingerprint = common.model_id(rec)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    work = tempfile.mkdtemp(prefix="bench-dups-")
    os.environ["PPSHITU_DUPLICATES_CACHE"] = os.path.join(work, "cache")
    result = {"model": {"dir": os.path.relpath(cfg.Global.rec_inference_model_dir, ROOT), "fingerprint": fingerprint},
              "k": args.k, "workers": args.workers, "quick": args.quick, "sets": {},
              "machine": {"cpu": describe(), "cores": os.cpu_count()}}
    recorded = _recorded(args.out) if args.merge else None
    try:
        for name in sets:
            t0 = time.perf_counter()
            if name in SETS:
                make, seed = SETS[name]
                rng = np.random.default_rng(seed)
                items = getattr(dup_sets, make)(rng, args.quick)
                folder = os.path.join(work, name)
                rows = dup_sets.write_items(items, folder, rng)
                res = measure_set(name, rows, folder, cfg, rec, os.path.join(work, name + "_index"), args.k,
                                  args.workers)
            elif name in CONFUSERS:
                seed, srcs, lo, bg, per_kind = CONFUSERS[name]
                rng = np.random.default_rng(seed)
                sources = getattr(dup_sets, srcs)
                bg = [dup_sets.load_any(n) for n in sources] if bg == "sources" else bg
                pairs = dup_sets.confuser_pairs(rng, sources, np.arange(lo, lo + 300),
                                                n_per_kind=12 if args.quick else per_kind, photo_bg=bg)
                folder = os.path.join(work, name)
                pair_rows, rows = dup_sets.write_confusers(pairs, folder, rng)
                best, res_from = _held_out_best(result, recorded)
                res = measure_confusers(pair_rows, rows, folder, cfg, rec, os.path.join(work, name + "_index"), args.k,
                                        args.workers, best)
                res["thresholds_from"] = res_from
                res["redrawn_until_visible"] = True
            else:
                raise SystemExit(f"unknown set {name!r}")
            res["seconds"], res["seed"] = round(time.perf_counter() - t0, 1), seed
            result["sets"][name] = res
            print(render_set(name, res), flush=True)
        if args.scale:
            result["scale"] = measure_scale(args.scale, cfg, rec, work, args.k, args.workers,
                                            np.random.default_rng(99))
            print(json.dumps(result["scale"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if recorded is not None:
        result = _merge(recorded, result, sets)
    text = render(result)
    os.makedirs(args.out, exist_ok=True)
    stem = "bench_duplicates_quick" if args.quick else "bench_duplicates"
    if set(sets) != {"dev", "dev-hard", "held-out", "confusers"} and recorded is None:
        stem += "_" + ("_".join(sets) if sets else "scale")
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
    print(text)
    return result


def _recorded(out):
    path = os.path.join(out, "bench_duplicates.json")
    if not os.path.exists(path):
        raise SystemExit(f"--merge: no recorded full run at {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _held_out_best(result, recorded):
    """pHash's and the embedding's best held-out thresholds for the confusers: this run's held-out set, else the
    recorded one (--merge), else fixed defaults."""
    if "held-out" in result["sets"]:
        return result["sets"]["held-out"]["best"], "held-out"
    ho = ((recorded or {}).get("sets") or {}).get("held-out")
    if ho and ho.get("best"):
        return ho["best"], f"held-out (recorded run, seed {ho.get('seed', SETS['held-out'][1])})"
    return {"phash": [8, "pairs"], "embedding": [0.94, "pairs"]}, "defaults (8, 0.94)"


def _merge(recorded, result, sets):
    """The recorded full results with the sets just run in place of theirs, each re-run set noted with its CPU
    and date."""
    merged = dict(recorded, sets={**recorded["sets"], **result["sets"]})
    reruns = dict(recorded.get("reruns") or {})
    for name in sets:
        reruns[name] = {"cpu": result["machine"]["cpu"], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "seed": result["sets"][name].get("seed")}
    merged["reruns"] = reruns
    return merged


def render_set(name, res):
    if "pairs" in res and "true_pairs" not in res:
        lines = [f"### {name}: {res['pairs']} similar-but-different pairs ({', '.join(f'{v} {k}' for k, v in res['per_kind'].items())}), "
                 f"{res['images']} images, no duplicates", "",
                 "| method | threshold | pairs called duplicates | share | by kind | of the "
                 f"{res.get('visibly_different_pairs', res['pairs'])} visibly different pairs | duplicate pairs "
                 "reported in the folder |", "|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            lines.append(f"| {r['method']} | {r['threshold']} | {r['pairs_called_duplicates']} | {r['share']:.1%} | "
                         + ", ".join(f"{k} {v}" for k, v in r["by_kind"].items())
                         + f" | {r.get('visible_called', r['pairs_called_duplicates'])} "
                         f"({r.get('visible_share', r['share']):.1%}) | {r['duplicate_pairs_reported_in_folder']} |")
        if res.get("redrawn_until_visible"):
            lines += ["", f"Drawn with seed {res.get('seed')}; a pair whose change landed on flat content (the two images "
                      f"not visibly different: dup_sets.visibly_different, fewer than 0.2 % of the pixels changed by "
                      f"more than 20 levels) is drawn again (dup_sets.visible_pair), so every pair is a real confuser. "
                      f"pHash and the embedding at thresholds from: {res.get('thresholds_from')}."]
        elif res.get("visibly_different_pairs", res["pairs"]) < res["pairs"]:
            lines += ["", f"{res['pairs'] - res['visibly_different_pairs']} of the {res['pairs']} generated pairs do "
                      f"not differ visibly (dup_sets.visibly_different: fewer than 0.2 % of the pixels changed by more "
                      f"than 20 levels; a region moved onto flat content): they are the same picture, not confusers, "
                      f"and are kept in the set as drawn, so both shares are shown."]
        return "\n".join(lines) + "\n"
    edits = sorted({e for r in res["rows"] for e in r["recall_by_edit"]})
    lines = [f"### {name}: {res['images']} images, {res['originals']} originals + {res['edited_copies']} edited copies, "
             f"{res['true_pairs']} true duplicate pairs", "",
             "| method | threshold | precision | recall | F1 | " + " | ".join(f"recall {e}" for e in edits)
             + " | s / 1000 images |", "|---|---|---|---|---|" + "---|" * len(edits) + "---|"]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['threshold']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                     + " | ".join(f"{r['recall_by_edit'].get(e, float('nan')):.2f}" for e in edits)
                     + f" | {r['s_per_1000']:.1f} |")
    return "\n".join(lines) + "\n"


def render(res):
    lines = ["# Duplicate finding: verified and calibrated per folder, vs pHash and the embedding", "",
             f"`bench/bench_duplicates.py`{' --quick' if res['quick'] else ''}. Model `{res['model']['dir']}` "
             f"({res['model']['fingerprint']}), k = {res['k']} nearest per image, {res['workers']} verification threads, "
             f"{res['machine']['cores']} cores (shared). pHash and the embedding are at their best threshold for each "
             f"set, chosen with the truth (upper bounds); find_duplicates calibrates its rule on each folder at run "
             f"time (target precision 0.95) without the truth. Time: seconds per 1,000 images, every step, on a "
             f"machine shared with other jobs (wall times there ran 2-4x the CPU time); calibration is a fixed "
             f"cost per folder (~20-50 s here), large on sets of ~200 images: see the scale run for a large folder.",
             "", res["machine"]["cpu"] if str(res["machine"]["cpu"]).startswith("CPU:") else
             f"CPU: {res['machine']['cpu']}", ""]
    ho, cf = res["sets"].get("held-out"), res["sets"].get("confusers")
    if ho and cf:
        ours, ph = ho["rows"][0], ho["rows"][1]
        share = cf["rows"][0]["share"]
        ok = lambda c: "met" if c else "NOT met"  # noqa: E731
        lines += ["Issue 25's targets, on the held-out set (fresh draw) and the confusers:", "",
                  f"- precision >= 0.95: {ours['precision']:.3f} ({ok(ours['precision'] >= 0.95)})",
                  f"- F1 >= 0.90: {ours['f1']:.3f} ({ok(ours['f1'] >= 0.90)}), ahead of pHash at its best threshold "
                  f"({ph['f1']:.3f}: {ok(ours['f1'] > ph['f1'])})",
                  f"- confusers called duplicates <= 2 %: {share:.1%} ({cf['rows'][0]['pairs_called_duplicates']} of "
                  f"{cf['pairs']}; {ok(share <= 0.02)}); of the {cf.get('visibly_different_pairs', cf['pairs'])} "
                  f"pairs whose images differ visibly: {cf['rows'][0].get('visible_share', share):.1%} "
                  f"({cf['rows'][0].get('visible_called', '?')}; {ok(cf['rows'][0].get('visible_share', share) <= 0.02)})",
                  ""]
        by = cf["rows"][0]["by_kind"]
        passing = ", ".join(f"{v} {k}" for k, v in by.items() if v) or "none"
        pv = PREVIOUS_RUN
        lines += [f"The confusers that pass: {passing}; this folder's calibration allowed "
                  f"{cf['calibration']['rule']['max_local']:.1%} of the worst tile to disagree. Recorded from the "
                  f"run before the verifier's per-pixel test was averaged over 3 x 3 neighbourhoods with a smaller "
                  f"gradient allowance, SIFT at 256 px, invisible synthetic changes dropped and the tile share "
                  f"capped at 10 % (ppshitu/library/verify.py, dupcalibrate.py; chosen on dev, dev-hard and "
                  f"dev-confusers only): held-out precision {pv['precision']:.3f}, recall {pv['recall']:.3f}, F1 "
                  f"{pv['f1']:.3f} (pHash {pv['phash_f1']:.3f}); confusers {pv['confusers']} of 120 "
                  f"({pv['confusers'] / 120:.1%}).", ""]
        if cf.get("redrawn_until_visible"):
            c9 = CONFUSERS_9191
            lines += [f"The confusers before the generator redrew invisible pairs (seed 9191, same finder): "
                      f"{c9['called']} of {c9['pairs']} called duplicates ({c9['called'] / c9['pairs']:.1%}), "
                      f"{c9['invisible_called']} of them among the {c9['invisible']} pairs whose two images did not "
                      f"differ visibly; the draw above (seed {cf.get('seed')}) was made fresh after that fix.", ""]
    for name, when in (res.get("reruns") or {}).items():
        lines += [f"`{name}` re-run on its own (`--sets {name} --merge`, seed {when.get('seed')}, {when['date']}, "
                  f"{when['cpu']}); the other sets are from the full run recorded before it.", ""]
    for name, r in res["sets"].items():
        lines.append(render_set(name, r))
        pp = r.get("ppshitu") or {}
        if pp.get("calibration_text"):
            lines += [f"Calibration on this folder, as printed: {pp['calibration_text']}", ""]
        if "time_split_s_per_1000" in (r.get("rows") or [{}])[0]:
            t = r["rows"][0]["time_split_s_per_1000"]
            lines += [f"find_duplicates' time per 1,000 images: index {t['index']} s, calibration {t['calibration']} s, "
                      f"candidates + verification + grouping {t['find']} s ({pp.get('candidates')} candidate pairs, "
                      f"{pp.get('verified_pairs')} verified, {pp.get('features_computed')} images' features); "
                      f"{pp.get('similar_pairs')} pairs shown as similar (never moved by default).", ""]
    lines += _history()
    if res.get("scale"):
        s = res["scale"]
        f = s.get("find_split") or {}
        lines += [f"Scale (`--scale {s['images']}`): a folder of {s['images']} images (designed images and small photo "
                  f"crops, a fifth with an edited copy), end to end {s['seconds_total']} s "
                  f"({s['seconds_total'] / 60:.1f} min) on the 2 shared cores (load average "
                  f"{'/'.join(str(x) for x in s.get('load_avg', []))} at the end; {s.get('cpu_seconds')} CPU "
                  f"seconds, all threads): index (decode, embed, hash) "
                  f"{s['index_s']} s, calibration {s['calibration_s']} s, find {s['find_s']} s "
                  f"(candidates {f.get('candidates')} s, verification {f.get('verification')} s for "
                  f"{s['candidates']} candidate pairs, grouping {f.get('grouping')} s; {s['verified_pairs']} pairs "
                  f"verified, {s['features_computed']} images' features). Time grows with the candidate pairs "
                  f"(at most k per image), both in proportion to the images.", ""]
    return "\n".join(lines)


def _history():
    """The looks at the held-out set and the confusers before this run (recorded, not re-run)."""
    fl = FIRST_LOOK
    lines = [f"First look (recorded, not re-run): the held-out set's first draw (seed 20250, with scikit-image's cat = "
             f"chelsea counted as two photos) under the earlier calibration gave precision {fl['held-out']['precision']}, "
             f"recall {fl['held-out']['recall']}, F1 {fl['held-out']['f1']} (pHash at its best: "
             f"{fl['held-out']['phash_f1']}), and the first confuser draw {fl['confusers']['pairs']} of "
             f"{fl['confusers']['of']} pairs ({fl['confusers']['share']:.1%}). What changed after it was motivated "
             f"on dev-hard (dev's sources, stronger edits): the neighbour pairs' own duplicates no longer count "
             f"against a rule (look-alikes are counted where unambiguous instead), wider calibration edit ranges, "
             f"visible local changes of 1-12 % of the area, clipped values compared one-sidedly, the whole frame "
             f"also tried unrefined. Those draws (seeds 4242, 8888) were then looked at with this verifier once "
             f"(second look, recorded: precision {SECOND_LOOK['precision']:.3f}, recall {SECOND_LOOK['recall']:.3f}, "
             f"F1 {SECOND_LOOK['f1']:.3f} on held-out, with calibration still taking the strictest rule, which sat "
             f"at the edge of the edited copies: >= 30 inliers, 0 % of a tile); after the choice was changed to the "
             f"loosest of the equally precise and recalled rules, the held-out set and the confusers were drawn "
             f"afresh (seeds 5151, 7373: the third look, below).", ""]
    tl = THIRD_LOOK
    lines += [f"Third look (recorded, not re-run): with the calibration's locally changed negatives drawn from 1-12 % "
              f"of the area, the held-out draw of seed {tl['seed']} gave precision {tl['precision']:.3f}, recall "
              f"{tl['recall']:.3f}, F1 {tl['f1']:.3f} (pHash at its best: {tl['phash_f1']:.3f}), and the confusers of "
              f"seed {tl['confusers']['seed']} {tl['confusers']['called']} of {tl['confusers']['pairs']} pairs "
              f"({tl['confusers']['called'] / tl['confusers']['pairs']:.1%}: {tl['confusers']['by_kind']}; that "
              f"folder's calibration took the {tl['confusers']['max_local']:.0%} cap: every change it drew disagreed "
              f"in >= 20 % of a tile, so it could not tell 3 % from 10 %, and a small visible change fills part of "
              f"one tile). What changed after it, chosen on dev, dev-hard and dev-confusers draws (seeds 5 and 7) "
              f"only: the local changes are drawn from 0.2 % of the area (dupcalibrate.LOCAL_AREA), so a folder's "
              f"own small changes set the allowance (3-8 % on the development folders).", ""]
    fo = FOURTH_LOOK
    lines += [f"Fourth look (recorded, not re-run; local changes from 0.2 %): the held-out draw of seed {fo['seed']} "
              f"gave precision {fo['precision']:.3f}, recall {fo['recall']:.3f}, F1 {fo['f1']:.3f} (pHash at its best: "
              f"{fo['phash_f1']:.3f}), and the confusers of seed {fo['confusers']['seed']} {fo['confusers']['called']} "
              f"of {fo['confusers']['pairs']} pairs (calibration took {fo['confusers']['max_local']:.0%} of a tile); "
              f"but the dev folder's calibration fell back to the documented default: a drawn change too small for "
              f"the comparison grid passes every rule, and counted it held every rule below the target. What changed "
              f"after it, on dev only: such unseen changes are left out of the rule choice (dupcalibrate._unseen). "
              f"The held-out set and the confusers above are fresh draws again (seeds {SETS['held-out'][1]}, "
              f"{CONFUSERS['confusers'][0]}; about 200 confuser pairs).", ""]
    return lines


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
