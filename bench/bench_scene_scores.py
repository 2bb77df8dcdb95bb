"""Which score should a calibrated threshold act on for detector crops? The top-1 cosine against neighbourhood-
normalised scores, calibrated the same way on the gallery's own items, measured end to end on scenes (issue 27).

    .venv/bin/python bench/bench_scene_scores.py

Scores of one query (its gallery matches, best first; s1 = the top-1 cosine):
* cosine: s1 (what the system thresholds now);
* label margin: s1 - the best cosine of a label other than the top-1's;
* minus 10th: s1 - the query's 10th nearest gallery item's cosine;
* minus mean 2-10: s1 - the mean cosine of its 2nd to 10th nearest items.
Each is calibrated as ppshitu/gallery/calibrate.py calibrates the cosine: every gallery item queried against the
rest (top-1 of its label: right, else wrong) and against the gallery without its label (unknown), half the
stream unknown; the lowest threshold reaching the target precision (0.7, 0.8, 0.9, 0.95). Then the demo detector
(threshold 0.4) + rec model run once over each scene set; every candidate's 40 nearest gallery items are kept and
the system's own decision and NMS (RecognitionSystem._select) are replayed at each threshold; eval_system's
metrics (a box counts at IoU 0.5). "Best" is the F1-optimal threshold found on the scenes themselves (an oracle,
for reference).
Each score is also calibrated with crop-like queries (ppshitu/gallery/crop_queries.py: the gallery items pasted
on photographs and cropped, what tools/calibrate_gallery.py --queries crops does) for the cosine and minus mean
2-10.
Sets: two DEV sets the scores were compared on first (gallery classes 70-89 with scenes of classes 70-99, seed 17;
gallery 100-119 with scenes of 100-129, seed 29), then the HELD-OUT set of bench/bench_calibration.py (gallery
40-59, scenes of 40-69, seed 5), 60 scenes each on crops of real photographs, 3 gallery views per class.
Writes bench/results/bench_scene_scores.md and .json.
"""
import copy
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ppshitu.gallery import calibrate as cal  # noqa: E402

CACHE = os.path.join(ROOT, "bench", ".cache", "scene_scores")
K = 40
TARGETS = (0.7, 0.8, 0.9, 0.95)
SETS = (  # name, rec set classes, gallery classes, scene classes, scene seed, cache dir
    ("dev A", 100, range(70, 90), range(70, 100), 17, os.path.join(CACHE, "dev_a")),
    ("dev B", 130, range(100, 120), range(100, 130), 29, os.path.join(CACHE, "dev_b")),
    ("held-out (bench_calibration's scenes)", 60, range(40, 60), range(40, 70), 5,
     os.path.join(ROOT, "bench", ".cache", "calibration", "scenes")),
)


def _margin(s, labels):
    for j in range(1, len(s)):
        if labels[j] != labels[0]:
            return s[0] - s[j]
    return s[0] - s[-1]  # no other label among the K: at least this


SCORES = {
    "cosine": lambda s, labels: s[0],
    "label margin": _margin,
    "minus 10th": lambda s, labels: s[0] - s[min(10, len(s)) - 1],
    "minus mean 2-10": lambda s, labels: s[0] - np.mean(s[1:10]),
}


def candidates(name, n_classes, gallery_classes, scene_classes, seed, data):
    """(system, scenes, candidates per image before NMS with their K matches)."""
    from bench_calibration import _cfg
    from dataset.synthetic import class_name, make_recognition_set, make_scenes

    from ppshitu.evaluation.system_metrics import load_coco_scenes
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.system import RecognitionSystem
    from ppshitu.utils.image import read_image

    rec_dir, scenes_dir, work = (os.path.join(data, d) for d in ("rec", "scenes", "scores"))
    if not os.path.isfile(os.path.join(rec_dir, "gallery_list.txt")):
        make_recognition_set(rec_dir, num_classes=n_classes, views_per_class=8, image_size=96,
                             num_train_classes=min(gallery_classes), gallery_views=3, seed=0)
    if not os.path.isfile(os.path.join(scenes_dir, "val.json")):
        make_scenes(scenes_dir, num_images=60, image_size=(240, 320), objects_per_image=(1, 4),
                    object_classes=list(scene_classes), seed=seed, split="val", photo_backgrounds=True)
    os.makedirs(work, exist_ok=True)
    names = {class_name(c) for c in gallery_classes}
    with open(os.path.join(rec_dir, "gallery_list.txt"), encoding="utf-8") as f:
        lines = [line for line in f if line.rstrip("\n").split("\t")[1] in names]
    with open(os.path.join(work, "gallery.txt"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    base = [f"IndexProcess.index_dir={work}/index", f"IndexProcess.image_root={rec_dir}",
            f"IndexProcess.data_file={work}/gallery.txt", "IndexProcess.index_method=Flat",
            f"Global.det_inference_model_dir={ROOT}/models/demo/det", "Global.threshold=0.4"]
    if not os.path.isdir(os.path.join(work, "index")):
        build_gallery(_cfg(*base))
    system = RecognitionSystem.from_config(_cfg(*base, "IndexProcess.score_thres=-1", f"IndexProcess.return_k={K}"))
    scenes = load_coco_scenes(os.path.join(scenes_dir, "val.json"))
    got, select = [], system._select
    system._select = lambda cands: (got.append(copy.deepcopy(cands)), [])[1]  # every candidate, before NMS
    for path, _, _ in scenes:
        system.predict(read_image(path))
    system._select = select
    print(f"{name}: {len(scenes)} scenes, {sum(len(c) for c in got)} candidates", flush=True)
    return system, scenes, got


def replay(system, scenes, got, fn, thres):
    """eval_system's metrics when a candidate is named only if fn(its matches) >= thres."""
    from ppshitu.evaluation.system_metrics import evaluate

    preds = []
    for cands in got:
        decided = []
        for c in cands:
            c = dict(c)
            if c["nearest_docs"] is not None:
                s = np.asarray([t["score"] for t in c["topk"]])
                ok = fn(s, [t["label"] for t in c["topk"]]) >= thres and not c["uniform"]
                c["rec_docs"] = c["nearest_docs"] if ok else "unknown"
            decided.append(c)
        preds.append(system._select(decided))
    m = evaluate(preds, scenes, system.gallery.labels())
    return {k: round(float(m[k]), 4) for k in ("precision", "recall", "f1")}


def gallery_measure(system, fn):
    """calibrate.measure's dict for score fn: leave-one-out (known) and held-out-label (unknown) queries."""
    from ppshitu.gallery.neighbours import gallery_arrays

    items = gallery_arrays(system.gallery)
    v, lab = items.vectors.astype(np.float64), np.asarray(items.labels)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top, right, unknown = [], [], []
    for i in range(len(v)):
        for drop in (None, lab[i]):
            row = sims[i] if drop is None else np.where(lab == drop, -np.inf, sims[i])
            order = np.argsort(-row)[:K]
            order = order[np.isfinite(row[order])]
            value = fn(row[order], lab[order])
            if drop is None:
                top.append(value)
                right.append(lab[order[0]] == lab[i])
            else:
                unknown.append(value)
    n = len(v)
    return {"rows": np.arange(n), "labels": lab, "known": np.ones(n, bool), "top": np.asarray(top),
            "correct": np.asarray(right), "unknown_top": np.asarray(unknown)}


def crop_measures(system, spec):
    """calibrate's measurement with crop-like queries (ppshitu/gallery/crop_queries.py, as calibrate_gallery
    makes them: its default sample and seed) for the cosine and minus mean 2-10."""
    from ppshitu.gallery import crop_queries as cq
    from ppshitu.gallery.calibrate import measure_queries
    from ppshitu.gallery.neighbours import gallery_arrays

    items = gallery_arrays(system.gallery)
    rows, vectors, _ = cq.crop_query_vectors(items, os.path.join(spec[5], "rec"), system.embedder)
    return {kind: measure_queries(items.vectors, items.label_ids, rows, vectors, True, score)
            for kind, score in (("cosine", "cosine"), ("minus mean 2-10", "neighbourhood"))}


def run_set(spec):
    name = spec[0]
    system, scenes, got = candidates(*spec)
    crops = crop_measures(system, spec)
    rows = []
    runs = [(kind, "gallery") for kind in SCORES] + [(kind, "crops") for kind in crops]
    for kind, queries in runs:
        fn = SCORES[kind]
        m = gallery_measure(system, fn) if queries == "gallery" else crops[kind]
        ts, precision, recall, _ = cal.curves(m)
        row = {"set": name, "score": kind, "queries": queries, "calibrated": []}
        for t in TARGETS:
            i, reached = cal._choose(ts, precision, recall, t)
            th = cal._between(ts, i)
            row["calibrated"].append({"target": t, "thres": round(th, 4), "expected_precision":
                                      round(float(precision[i]), 4), **replay(system, scenes, got, fn, th)})
        grid = np.unique(np.quantile(np.concatenate([m["top"], m["unknown_top"]]), np.linspace(0.01, 0.99, 50)))
        row["best"] = max((dict(replay(system, scenes, got, fn, th), thres=round(float(th), 4)) for th in grid),
                          key=lambda r: r["f1"])
        if kind == "cosine" and queries == "gallery":
            row["constants"] = [{"thres": c, **replay(system, scenes, got, fn, c)} for c in (0.5, 0.75)]
        rows.append(row)
        print(f"{name} {kind} ({queries} queries): " + ", ".join(f"target {c['target']}: P {c['precision']:.3f} R {c['recall']:.3f} "
                                             f"F1 {c['f1']:.3f}" for c in row["calibrated"])
              + f"; best F1 {row['best']['f1']:.3f}", flush=True)
    return rows


def main():
    from ppshitu.utils.cpu import describe

    rows = [r for spec in SETS for r in run_set(spec)]
    write(rows, describe(), os.path.join(ROOT, "bench", "results", "bench_scene_scores"))


def write(rows, cpu, out):
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({"cpu": cpu, "rows": rows}, f, indent=1)
    lines = ["# Scores for the calibrated threshold on detector crops", "",
             f"`bench/bench_scene_scores.py` ({cpu}): demo detector (threshold 0.4) + demo rec model (EfficientNet-"
             f"Lite0, 512-d), unseen classes pasted on crops of real photographs, 20 gallery classes x 3 views, 10 "
             f"classes never in the gallery, 60 scenes per set. Each score calibrated on the gallery's own items "
             f"(leave-one-out + held-out labels, as ppshitu/gallery/calibrate.py) for the target precision; P/R/F1: "
             f"eval_system's metrics on the scenes at that threshold; best: the F1-optimal threshold on the scenes "
             f"(oracle). Dev sets first (the scores were compared there), then the held-out set.", "",
             "| set | score | " + " | ".join(f"P / R / F1 at target {t}" for t in TARGETS) + " | best F1 (thres) |",
             "|---|---|" + "---|" * len(TARGETS) + "---|"]
    for r in rows:
        cells = [f"{c['precision']:.3f} / {c['recall']:.3f} / **{c['f1']:.3f}**" for c in r["calibrated"]]
        crop = ", crop-like queries" if r.get("queries") == "crops" else ""
        lines.append(f"| {r['set']} | {r['score']}{crop} | " + " | ".join(cells) + f" | {r['best']['f1']:.3f} "
                     f"({r['best']['thres']}) |")
    lines += ["", "Constants (cosine): " + "; ".join(
        f"{r['set']}: " + ", ".join(f"{c['thres']} F1 {c['f1']:.3f}" for c in r["constants"])
        for r in rows if r["score"] == "cosine" and r.get("queries") != "crops") + "."]
    lines += ["", "IndexProcess.score neighbourhood is \"minus mean 2-10\": at the default target 0.95 it had the best "
              "calibrated F1 on both dev sets (dev B: level with \"minus 10th\"). The held-out rows were computed in "
              "the same run as the dev rows (this script runs all three), so they were seen before the choice; no "
              "threshold or parameter was fitted on them.",
              "", "*Crop-like queries*: calibrated on the gallery items pasted on photographs and cropped as a "
              "detector's box (ppshitu/gallery/crop_queries.py, tools/calibrate_gallery.py --queries crops: 600 "
              "crops, 10 per item here, seed 0) instead of the items' own vectors. Its settings (central 70-100 % "
              "of the item, 36-144 px, box jitter 8 %, several crops per item) were chosen on the dev sets "
              "(tried: one crop per item, which left the 0.95 threshold to a handful of tail scores; central "
              "55-85 %, worse on dev A); the held-out rows are from this run. Target 0.7 was added after the "
              "first held-out run (bench_calibration B) had shown it; its dev rows here are what checks it."]
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
