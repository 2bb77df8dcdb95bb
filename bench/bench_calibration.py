"""The calibrated score_thres measured: the precision its threshold reaches on held-out queries, against its
target, over many random gallery/query splits; and end to end, on scenes, against the shipped constants.

    .venv/bin/python bench/bench_calibration.py [--splits 20] [--quick]

A. Held-out splits. A pool of 200 classes the demo rec model never saw (dataset/synthetic.py's render_view at
   96 px, 10 views each, embedded once with models/demo/rec). Each split puts G classes in the gallery (4
   random views each; their other 6 views are the known queries) and 60 other classes aside as unknown
   queries (all their views). ppshitu/gallery/calibrate.py sees the gallery only; its threshold is then scored
   on the held-out queries, half known and half unknown (the share it assumes): precision, recall.
B. End to end (not with --quick): scenes of unseen objects (20 gallery classes, 10 never in it) pasted on
   crops of real photographs, the demo detector + rec model (eval_system's metrics), with score_thres 0.5
   (PP-ShiTu's), 0.75 (the demo's, fitted on its generated scenes) and the gallery's calibrated values, for the
   top-1 cosine and for IndexProcess.score neighbourhood (ppshitu/gallery/scores.py); calibrated on the gallery's
   items and on crop-like queries (ppshitu/gallery/crop_queries.py, calibrate_gallery --queries crops).
Writes bench/results/bench_calibration.md and .json.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppshitu.gallery import calibrate as cal  # noqa: E402

CACHE = os.path.join(ROOT, "bench", ".cache", "calibration")
POOL = range(40, 240)
VIEWS = 10
TARGETS = (0.8, 0.9, 0.95)


def _cfg(*extra):
    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA

    return load_config(os.path.join(ROOT, "configs/inference/inference_general.yaml"),
                       [f"Global.rec_inference_model_dir={ROOT}/models/demo/rec", "Global.det_inference_model_dir=",
                        "Global.cpu_num_threads=2", *extra], INFER_SCHEMA)


def pool():
    from dataset.synthetic import _rng, render_view

    from ppshitu.gallery.model_id import model_fingerprint
    from ppshitu.infer.factory import rec_predictor

    rec = rec_predictor(_cfg())
    path = os.path.join(CACHE, f"pool_{model_fingerprint(rec)}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["vectors"], z["classes"], z["views"]
    keys = [(c, v) for c in POOL for v in range(VIEWS)]
    start = time.perf_counter()
    vectors = np.concatenate([rec.predict([render_view(c, _rng(0, "calibration-bench", c, v), 96)
                                           for c, v in keys[i:i + 64]]) for i in range(0, len(keys), 64)])
    print(f"pool: {len(keys)} images rendered and embedded in {time.perf_counter() - start:.0f} s", flush=True)
    os.makedirs(CACHE, exist_ok=True)
    classes, views = np.asarray([c for c, _ in keys]), np.asarray([v for _, v in keys])
    np.savez(path, vectors=vectors, classes=classes, views=views)
    return vectors, classes, views


def held_out(vectors, classes, views, n_gallery, splits, seed=0):
    rng = np.random.default_rng(seed)
    rows = {t: [] for t in TARGETS}
    for _ in range(splits):
        order = rng.permutation(np.asarray(POOL))
        in_gallery, unknown = order[:n_gallery], order[n_gallery:n_gallery + 60]
        g = np.zeros(len(vectors), bool)
        known = np.zeros(len(vectors), bool)
        for c in in_gallery:
            vs = rng.permutation(VIEWS)
            g |= (classes == c) & np.isin(views, vs[:4])
            known |= (classes == c) & np.isin(views, vs[4:])
        gv, gl = vectors[g], classes[g]
        s = vectors[known] @ gv.T
        top, right = s.max(1), gl[s.argmax(1)] == classes[known]
        unk = (vectors[np.isin(classes, unknown)] @ gv.T).max(1)
        for t in TARGETS:
            start = time.perf_counter()
            r = cal.calibrate_vectors(gv, gl, True, t)
            secs = time.perf_counter() - start
            th = r["score_thres"]
            tp, fpk, fpu = ((top >= th) & right).mean(), ((top >= th) & ~right).mean(), (unk >= th).mean()
            p = tp / max(tp + fpk + fpu, 1e-12)
            lo, hi = r["precision_interval"]
            rows[t].append({"precision": p, "recall": tp, "cal_precision": r["precision"], "cal_recall": r["recall"],
                            "thres": th, "in_interval": lo <= p <= hi, "seconds": secs})
    out = []
    for t, rs in rows.items():
        p = np.asarray([r["precision"] for r in rs])
        out.append({"gallery_classes": n_gallery, "items": n_gallery * 4, "target": t, "splits": len(rs),
                    "precision_mean": float(p.mean()), "precision_sd": float(p.std()),
                    "within_003": float(np.mean(np.abs(p - t) <= 0.03)),
                    "in_interval": float(np.mean([r["in_interval"] for r in rs])),
                    "recall_held_out": float(np.mean([r["recall"] for r in rs])),
                    "recall_calibrated": float(np.mean([r["cal_recall"] for r in rs])),
                    "thres_mean": float(np.mean([r["thres"] for r in rs])),
                    "seconds": float(np.median([r["seconds"] for r in rs]))})
        r = out[-1]
        print(f"{n_gallery:>4} classes x 4, target {t}: held-out precision {r['precision_mean']:.3f} (sd "
              f"{r['precision_sd']:.3f}, within 0.03 in {r['within_003']:.0%} of splits), recall {r['recall_held_out']:.3f} "
              f"(calibration said {r['recall_calibrated']:.3f})", flush=True)
    return out


def scenes_end_to_end():
    """eval_system's metrics on photo scenes at the constants and at calibrated values."""
    from dataset.synthetic import class_name, make_recognition_set, make_scenes

    from ppshitu.embedder import Embedder
    from ppshitu.evaluation.system_metrics import evaluate_system
    from ppshitu.gallery.base import open_gallery
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.library.calibrate import DEMO_SET
    from ppshitu.system import RecognitionSystem

    data = os.path.join(CACHE, "scenes")
    rec_dir, scenes = os.path.join(data, "rec"), os.path.join(data, "scenes")
    if not os.path.isfile(os.path.join(rec_dir, "gallery_list.txt")):
        make_recognition_set(rec_dir, **DEMO_SET)
    if not os.path.isfile(os.path.join(scenes, "val.json")):
        make_scenes(scenes, num_images=60, image_size=(240, 320), objects_per_image=(1, 4),
                    object_classes=list(range(40, 70)), seed=5, split="val", photo_backgrounds=True)
    in_gallery = {class_name(c) for c in range(40, 60)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lines = [l for l in open(os.path.join(rec_dir, "gallery_list.txt"), encoding="utf-8")
                 if l.rstrip("\n").split("\t")[1] in in_gallery]
        with open(os.path.join(tmp, "gallery.txt"), "w", encoding="utf-8") as f:
            f.writelines(lines)
        base = [f"IndexProcess.index_dir={tmp}/index", f"IndexProcess.image_root={rec_dir}",
                f"IndexProcess.data_file={tmp}/gallery.txt", "IndexProcess.index_method=Flat",
                f"Global.det_inference_model_dir={ROOT}/models/demo/det", "Global.threshold=0.4"]
        build_gallery(_cfg(*base))
        settings = [("0.5 (PP-ShiTu's constant)", 0.5, "cosine"), ("0.75 (the demo's, fitted on its scenes)", 0.75,
                                                                    "cosine")]
        crops = {"embedder": Embedder.from_config(_cfg(*base), rec_predictor(_cfg(*base))), "image_root": rec_dir}
        for queries, targets in (("gallery", TARGETS), ("crops", (0.7,) + TARGETS)):
            for t in targets:
                g = open_gallery(_cfg(*base).IndexProcess)
                r = cal.calibrate_gallery(g, t, crops=crops if queries == "crops" else None)
                g.close()
                for score in ("cosine", "neighbourhood"):
                    own = r if score == "cosine" else r["neighbourhood"]
                    how = "crop-calibrated" if queries == "crops" else "calibrated"
                    settings.append((f"{'' if score == 'cosine' else 'score neighbourhood, '}{how} for {t} (expected "
                                     f"precision {own['precision']}, recall {own['recall']})", own["score_thres"],
                                     score))
        settings.sort(key=lambda s: ("crop-calibrated" in s[0], s[2] == "neighbourhood"))  # (stable: targets in order)
        for name, value, score in settings:
            system = RecognitionSystem.from_config(_cfg(*base, f"IndexProcess.score_thres={value}",
                                                        f"IndexProcess.score={score}"))
            m = evaluate_system(system, os.path.join(scenes, "val.json"), progress=False)
            rows.append({"setting": name, "score_thres": value, "score": score,
                         **{k: m[k] for k in ("precision", "recall", "f1")}})
            print(f"scenes, score_thres {value:.4f} {name}: precision {m['precision']:.3f} recall {m['recall']:.3f} "
                  f"F1 {m['f1']:.3f}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="part A only, 5 splits, two gallery sizes")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "bench_calibration"))
    args = p.parse_args()
    from ppshitu.utils.cpu import describe

    vectors, classes, views = pool()
    splits = 5 if args.quick else args.splits
    sizes = (40, 120) if args.quick else (40, 80, 140)
    a = [row for n in sizes for row in held_out(vectors, classes, views, n, splits)]
    b = [] if args.quick else scenes_end_to_end()
    write(a, b, splits, describe(), args.out)


def write(a, b, splits, cpu, out):
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({"cpu": cpu, "held_out": a, "scenes": b}, f, indent=1)
    lines = ["# Calibrated score_thres: the precision it reaches", "",
             f"`bench/bench_calibration.py` ({cpu}). Embeddings: the committed demo rec model (EfficientNet-Lite0, "
             f"512-d); classes it never saw (dataset/synthetic.py, 96 px).", "",
             f"## A. Held-out queries ({splits} random splits per row)", "",
             "Each split: the gallery's classes with 4 views each (the calibration sees only these), their other 6 "
             "views as known queries, 60 other classes (10 views each) as unknown queries; precision with half the "
             "queries unknown, as calibrated. *Within 0.03*: share of splits whose held-out precision is within 0.03 "
             "of the target; *in interval*: share inside the calibration's own 5-95 % label-resampling interval; "
             "recall: held-out, and as the calibration (leave-one-out) estimated it.", "",
             "| gallery | target | held-out precision (mean, sd) | within 0.03 | in interval | recall held out | "
             "recall estimated | mean threshold | calibration s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in a:
        lines.append(f"| {r['gallery_classes']} classes, {r['items']} items | {r['target']} | {r['precision_mean']:.3f}, "
                     f"{r['precision_sd']:.3f} | {r['within_003']:.0%} | {r['in_interval']:.0%} | "
                     f"{r['recall_held_out']:.3f} | {r['recall_calibrated']:.3f} | {r['thres_mean']:.3f} | "
                     f"{r['seconds']:.2f} |")
    errs = [abs(r["precision_mean"] - r["target"]) for r in a]
    sds = [r["precision_sd"] for r in a]
    lines += ["", f"Averaged over the splits, the held-out precision is within {max(errs):.3f} of the target in every row "
              f"({sum(e <= 0.03 for e in errs)} of {len(errs)} rows within 0.03). One split alone scatters by "
              f"{min(sds):.3f}-{max(sds):.3f} (sd) at these sizes (a few hundred items, some tens of confusable "
              f"classes): what a single small gallery's calibration can promise, and what its recorded "
              f"precision_interval is there to show. The recall it estimates (leave-one-out: one image fewer per "
              f"label than a real query meets) is below the held-out one in "
              f"{sum(r['recall_calibrated'] < r['recall_held_out'] for r in a)} of {len(a)} rows."]
    if b:
        lines += ["", "## B. End to end: unseen objects on real photographs", "",
                  "60 scenes, 1-4 objects each of 30 classes the model never saw (20 in the gallery, 3 views each; 10 "
                  "never in it), pasted on crops of real photographs; the demo detector (threshold 0.4) + rec model; "
                  "eval_system's metrics (a box counts at IoU 0.5).", "",
                  "| score_thres | value | precision | recall | F1 |", "|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['score_thres']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['f1']:.3f} |" for r in b]
        cal_rows = [r for r in b if r["setting"].startswith("calibrated")]
        const = [r for r in b if "calibrated" not in r["setting"]]
        nb = [r for r in b if r["setting"].startswith("score neighbourhood, calibrated")]
        crop = [r for r in b if "crop-calibrated" in r["setting"]]
        targets = ", ".join(r["setting"].split()[2] for r in cal_rows)
        const_p = ", ".join(f"{r['precision']:.3f}" for r in const)
        const_f1 = ", ".join(f"{r['f1']:.3f}" for r in const)
        lines += ["", f"On these scenes the calibrated thresholds reach precision "
                  f"{min(r['precision'] for r in cal_rows):.3f}-{max(r['precision'] for r in cal_rows):.3f} (targets "
                  f"{targets}) at recall {min(r['recall'] for r in cal_rows):.3f}-{max(r['recall'] for r in cal_rows):.3f}"
                  f" (F1 {min(r['f1'] for r in cal_rows):.3f}-{max(r['f1'] for r in cal_rows):.3f}); the constants give "
                  f"precision {const_p} at F1 {const_f1}. The calibration compares gallery images with gallery "
                  f"images; a detector's crop on a photograph is further from its class's gallery images than they "
                  f"are from each other, so here the precision overshoots the target and the recall falls below the "
                  f"estimate: a calibrated value is a precision floor for queries that look like the gallery, not an "
                  f"F1 optimum for queries that do not."]
        if nb:
            lines += ["", "With `IndexProcess.score: neighbourhood` (top-1 minus the mean of the query's matches 2-10, "
                      "ppshitu/gallery/scores.py; calibrated the same way, on the same gallery) the calibrated values "
                      "give precision " + ", ".join(f"{r['precision']:.3f}" for r in nb) + " at F1 "
                      + ", ".join(f"{r['f1']:.3f}" for r in nb) + " (targets " + ", ".join(
                          r["setting"].split("calibrated for ")[1].split()[0] for r in nb) + "), against the cosine's "
                      "F1 " + ", ".join(f"{r['f1']:.3f}" for r in cal_rows) + f" and the constant 0.5's "
                      f"{const[0]['f1']:.3f} (bench/results/bench_scene_scores.md compares the scores on two dev "
                      f"scene sets first)."]
        if crop:
            lines += ["", "*Crop-calibrated* (`tools/calibrate_gallery.py --queries crops`, ppshitu/gallery/"
                      "crop_queries.py): the same gallery's items pasted on photographs and cropped as a detector's "
                      "box (600 crops, seed 0), embedded by the rec model, as the calibration's queries: "
                      + "; ".join(f"{r['setting'].split(' (')[0]}: precision {r['precision']:.3f}, F1 {r['f1']:.3f}"
                                  for r in crop) + ". Its settings were chosen on the dev scene sets of "
                      "bench/results/bench_scene_scores.md, not on these scenes; target 0.7 was first tried "
                      "here (in this run), then checked on the dev sets there."]
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
