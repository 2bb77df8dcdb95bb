"""Query-time options that cost no retraining, measured on classes the model never saw: recall@1 and ms per query.

    .venv/bin/python bench/bench_query_options.py [--quick]

Options (each a config key, the code every tool runs):
* baseline;
* flip: RecPreProcess.flip_average (ppshitu/embedder.py: gallery and queries embedded as the mean of the image's
  and its mirror image's vectors);
* qe: IndexProcess.query_expansion=2, qe_alpha=3 (ppshitu/gallery/query_expansion.py: alpha-QE, literature
  values, not tuned here);
* csls: IndexProcess.rerank=csls (the top 10 re-ordered by 2 x score - the candidate's mean score to its 5
  nearest gallery items, CSLS of Conneau et al. 2018: hubs demoted);
* flip+qe, flip+csls.
Model: the committed demo rec model (models/demo/rec, trained on the demo's classes 0-39). Data sets, none used
to choose anything (generated or augmented here, fixed seeds):
* demo-unseen: the demo's held-out classes 40-59 (dataset/synthetic.py render_view, 96 px), 8 views each: 3 in
  the gallery, 5 queries;
* synthetic-120: 120 other unseen classes (300-419), 5 views: 2 in the gallery, 3 queries;
* photos: scikit-image's sample photographs (18), 3 regions of each = 54 classes, 6 augmented views each
  (crop jitter, scale, rotation, colour, blur, JPEG): 3 in the gallery, 3 queries.
Recall@1: each query's top-1 gallery label (a FAISS Flat gallery, the RecognitionSystem's search path). ms per
query: one query at a time through RecognitionSystem.search (embed + expand + search), median over the set's
first queries, all options timed in the same run under the same load (the CPU is shared: compare ratios).
Also measured, not options (they gained too little to become one, or are a model choice):
* gallery crops: each gallery image stored as 12 vectors (the whole image, its central and four corner 80 % crops,
  each with its mirror image), queries as they are (done here, outside the tools: the stores keep one vector per
  image path);
* --backbones: EfficientNet-Lite1 / Lite2 trained exactly as the demo's Lite0 (bench/backbone_models.py: same data,
  recipe and epochs, 160 px; trained and cached on first use, ~15-30 min each on 2 cores) in place of the demo model.
Writes bench/results/bench_query_options.md and .json.
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
sys.path.insert(0, os.path.join(ROOT, "bench"))

# (name, flip, query expansion N, rerank, gallery views, backbone): backbone lite0 is the demo model
OPTIONS = (("baseline", False, 0, "none", "one", "lite0"), ("flip", True, 0, "none", "one", "lite0"),
           ("qe", False, 2, "none", "one", "lite0"), ("csls", False, 0, "csls", "one", "lite0"),
           ("flip+qe", True, 2, "none", "one", "lite0"), ("flip+csls", True, 0, "csls", "one", "lite0"),
           ("gallery crops", False, 0, "none", "crops", "lite0"))
BACKBONE_OPTIONS = (("Lite1 backbone", False, 0, "none", "one", "lite1"),
                    ("Lite2 backbone", False, 0, "none", "one", "lite2"))
CROP_SHARE = 0.8  # gallery crops: the central and four corner crops keep 80 % of each side
QE_ALPHA = 3.0
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "coins", "camera", "moon", "horse", "brick", "grass", "gravel", "cell", "clock", "page")
REGIONS = ((0.0, 0.0, 0.6, 0.6), (0.4, 0.4, 1.0, 1.0), (0.2, 0.25, 0.8, 0.85))  # x1, y1, x2, y2 fractions


def synthetic_set(classes, views, n_gallery, tag):
    """[(label, rgb)] gallery and queries of rendered unseen classes."""
    from dataset.synthetic import _rng, render_view

    gallery, queries = [], []
    for c in classes:
        for v in range(views):
            rgb = render_view(c, _rng(0, tag, c, v), 96)
            (gallery if v < n_gallery else queries).append((f"class {c}", rgb))
    return gallery, queries


def _augment(photo, box, rng):
    import cv2

    h, w = photo.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = (x2 - x1) * w, (y2 - y1) * h
    s = rng.uniform(0.8, 1.0)
    cx = (x1 + x2) / 2 * w + rng.uniform(-0.1, 0.1) * bw
    cy = (y1 + y2) / 2 * h + rng.uniform(-0.1, 0.1) * bh
    half = s * min(bw, bh) / 2
    m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-15, 15), 1.0)
    rot = cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    crop = rot[int(max(0, cy - half)):int(min(h, cy + half)), int(max(0, cx - half)):int(min(w, cx + half))]
    crop = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA).astype(np.float32)
    crop = crop * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25) + rng.uniform(-12, 12, 3)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.5))
    ok, jpg = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def photo_set(photos, views=6, n_gallery=3):
    import warnings

    from skimage import data
    from skimage.util import img_as_ubyte

    from ppshitu.utils.image import as_rgb_uint8

    gallery, queries = [], []
    for p, name in enumerate(photos):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = getattr(data, name)()
        img = img_as_ubyte(img)  # some samples are bool or float
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[:, :, :3]
        img = as_rgb_uint8(img, name)
        for r, box in enumerate(REGIONS):
            rng = np.random.default_rng(1000 * p + r)
            for v in range(views):
                (gallery if v < n_gallery else queries).append((f"{name} {r}", _augment(img, box, rng)))
    return gallery, queries


def gallery_views(rgb, views):
    """The images one gallery item is stored as: itself, or (views "crops") the whole image and its central and
    four corner crops of CROP_SHARE of each side, each also mirrored."""
    if views == "one":
        return [rgb]
    h, w = rgb.shape[:2]
    ch, cw = int(h * CROP_SHARE), int(w * CROP_SHARE)
    corners = (((h - ch) // 2, (w - cw) // 2), (0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw))
    out = [rgb] + [rgb[y:y + ch, x:x + cw] for y, x in corners]
    return [np.ascontiguousarray(v) for v in out + [v[:, ::-1] for v in out]]


def _system(option, gallery_items, workdir, name, embedded):
    """A RecognitionSystem over a Flat gallery of `gallery_items`, both made through the config path."""
    from backbone_models import model_dir

    from ppshitu.config import load_config
    from ppshitu.embedder import Embedder
    from ppshitu.gallery import Gallery
    from ppshitu.gallery.model_id import model_fingerprint
    from ppshitu.infer.factory import rec_predictor
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.system import RecognitionSystem

    label, flip, qe, rerank, views, backbone = option
    cfg = load_config(os.path.join(ROOT, "configs/inference/inference_general.yaml"),
                      [f"Global.rec_inference_model_dir={model_dir(backbone)}", "Global.det_inference_model_dir=",
                       "Global.cpu_num_threads=2", f"RecPreProcess.flip_average={str(flip).lower()}",
                       f"IndexProcess.query_expansion={qe}", f"IndexProcess.qe_alpha={QE_ALPHA}",
                       f"IndexProcess.rerank={rerank}"], INFER_SCHEMA)
    rec = rec_predictor(cfg)
    key = (flip, views, backbone)
    if key not in embedded:  # the gallery's vectors, once per embedding, with the process's CPU time it took
        emb = Embedder(rec, batch_size=64)
        images = [(lab, f"{i}-{v}.jpg", img) for i, (lab, rgb) in enumerate(gallery_items)
                  for v, img in enumerate(gallery_views(rgb, views))]
        emb.embed_crops([images[0][2]])  # warm-up (first-call costs), outside the timing
        c = time.process_time()
        vectors = np.concatenate([emb.embed_crops([img for *_, img in images[i:i + 64]])
                                  for i in range(0, len(images), 64)])
        embedded[key] = (vectors, [lab for lab, *_ in images], [p for _, p, _ in images], time.process_time() - c)
    vectors, labels, paths, _ = embedded[key]
    g = Gallery.create(os.path.join(workdir, f"{name}_{label}".replace(" ", "_")), rec.embedding_size,
                       index_method="Flat", model_fingerprint=model_fingerprint(rec))
    g.add(vectors, labels, paths)
    ip = cfg.IndexProcess
    return RecognitionSystem(rec, g, None, score_thres=0.0, query_expansion=ip.query_expansion,
                             qe_alpha=ip.qe_alpha, rerank=ip.rerank, min_crop_std=0.0)


def measure(name, gallery_items, queries, timed, workdir, options=OPTIONS):
    rows = []
    truth = [lab for lab, _ in queries]
    systems, embedded = {}, {}
    for option in options:
        systems[option[0]] = _system(option, gallery_items, workdir, name, embedded)
    gallery_cpu = {o[0]: embedded[o[1], o[4], o[5]][3] for o in options}
    for option, *_ in options:
        system = systems[option]
        t = time.perf_counter()
        vectors = np.concatenate([system.embedder.embed_crops([rgb for _, rgb in queries[i:i + 64]])
                                  for i in range(0, len(queries), 64)])
        labels, _, _ = system.search_vectors(vectors, 1)
        batch_s = time.perf_counter() - t
        recall = float(np.mean([row[0] == lab for row, lab in zip(labels, truth)]))
        rows.append({"set": name, "option": option, "recall_at_1": recall, "queries": len(queries),
                     "gallery": len(gallery_items), "classes": len(set(truth)), "batch_ms_per_query":
                     1000 * batch_s / len(queries), "gallery_cpu_vs_baseline": gallery_cpu[option] /
                     gallery_cpu["baseline"]})
    # per-query latency, interleaved so each option sees the same load
    # (the process's CPU time as well as wall time: other engineers' jobs inflate wall time, not this process's CPU)
    times, cpu = {o[0]: [] for o in options}, {o[0]: [] for o in options}
    for _, rgb in queries[:timed]:
        for option, *_ in options:
            t, c = time.perf_counter(), time.process_time()
            systems[option].search(rgb, k=5)
            times[option].append(time.perf_counter() - t)
            cpu[option].append(time.process_time() - c)
    base, base_cpu = np.median(times["baseline"]), np.median(cpu["baseline"])
    for r in rows:
        r["ms_per_query"] = 1000 * float(np.median(times[r["option"]]))
        r["time_vs_baseline"] = float(np.median(times[r["option"]]) / base)
        r["cpu_ms_per_query"] = 1000 * float(np.median(cpu[r["option"]]))
        r["cpu_vs_baseline"] = float(np.median(cpu[r["option"]]) / base_cpu)
        print(f"{name:>14} {r['option']:>8}: recall@1 {r['recall_at_1']:.3f}  {r['ms_per_query']:.1f} ms/query "
              f"(x{r['time_vs_baseline']:.2f}), CPU {r['cpu_ms_per_query']:.1f} ms (x{r['cpu_vs_baseline']:.2f})",
              flush=True)
    for s in systems.values():
        s.gallery.close() if hasattr(s.gallery, "close") else None
    return rows


def write(rows, info, quick):
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    sets = list(dict.fromkeys(r["set"] for r in rows))
    lines = ["# Query-time options (issue 27): recall@1 on unseen classes, ms per query", "",
             f"{info['cpu']}; load average at start {info['load']}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             f"{' (--quick)' if quick else ''}. Model: models/demo/rec (demo rec model, trained on the demo's classes "
             f"0-39); every class below unseen. qe: query_expansion=2, qe_alpha={QE_ALPHA} (literature values); "
             "csls: rerank=csls (top 10, 5 neighbours). "
             "ms per query: one query at a time through RecognitionSystem.search (embed, expand, search, re-rank), "
             "median, options interleaved in one run on a shared 2-core machine: compare the x-ratios, not the ms.",
             "CPU ms: this process's CPU time per query (all its threads), less disturbed by the other jobs; "
             "gallery x: the CPU time of embedding the gallery, against the baseline's.",
             "", "| set (gallery / queries / classes) | option | recall@1 | vs baseline | ms / query (wall) | "
             "x baseline | CPU ms / query | x baseline CPU | gallery x CPU |", "|---|---|---|---|---|---|---|---|---|"]
    for s in sets:
        base = next(r for r in rows if r["set"] == s and r["option"] == "baseline")
        for r in (r for r in rows if r["set"] == s):
            lines.append(f"| {s} ({r['gallery']} / {r['queries']} / {r['classes']}) | {r['option']} | "
                         f"{r['recall_at_1']:.3f} | {r['recall_at_1'] - base['recall_at_1']:+.3f} | "
                         f"{r['ms_per_query']:.1f} | {r['time_vs_baseline']:.2f} | {r['cpu_ms_per_query']:.1f} | "
                         f"{r['cpu_vs_baseline']:.2f} | {r['gallery_cpu_vs_baseline']:.2f} |")
    lines += ["", "*gallery crops*: 12 vectors per gallery image (whole, central and four corner crops of "
              f"{CROP_SHARE:.0%} of each side, each mirrored), queries as they are; measured here only."]
    lines += _backbone_lines(info.get("backbones")) + [""]
    text = "\n".join(lines)
    name = "bench_query_options" + ("_quick" if quick else "")
    with open(os.path.join(out, name + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    print(text)
    return os.path.join(out, name + ".md")


def _backbone_lines(trained):
    """How the Lite1 / Lite2 rows' models were trained (bench/backbone_models.py's records), or why not run."""
    if not trained:
        return ["", "EfficientNet-Lite1 / Lite2 backbones: not in this run (`--backbones` trains them as the demo's "
                "Lite0 was, ~15-30 min each on 2 cores, and adds their rows)."]
    out = ["", "*Lite1 / Lite2 backbone*: trained exactly as the demo's Lite0 (bench/backbone_models.py: the demo's 40 "
           "training classes, configs/rec/EfficientNetLite0_demo.yaml, 6 epochs at 160 px, best epoch by unseen "
           "recall@1, only Arch.Backbone.name changed); the query-time options above use the demo's Lite0. "
           "Their training, on the demo's 20 unseen classes (each image against all others):", "",
           "| backbone | off the shelf R@1 | fine-tuned R@1 (epoch) | train img/s | train minutes | load at start |",
           "|---|---|---|---|---|---|"]
    for name, r in trained.items():
        out.append(f"| {r['backbone']} | {r['off_the_shelf_recall1']:.3f} | {r['best_recall1']:.3f} "
                   f"({r['best_epoch']}) | {r['train_images_per_s']:.1f} | {r['minutes']:.1f} | {r['load_at_start']} |")
    return out + ["", "(Lite0's own training: models/demo/README.md; its training speed on this run's CPU is not "
                  "re-measured here.)"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sets (a minute or two)")
    p.add_argument("--timed", type=int, default=40, help="queries timed one at a time per option")
    p.add_argument("--backbones", action="store_true",
                   help="add EfficientNet-Lite1 / Lite2 rows (trained as the demo's Lite0 when not cached)")
    args = p.parse_args(argv)
    from backbone_models import model_dir, record

    from ppshitu.utils.cpu import describe

    info = {"cpu": describe(), "load": [round(x, 2) for x in os.getloadavg()]}
    options = OPTIONS + (BACKBONE_OPTIONS if args.backbones else ())
    if args.backbones:
        for b in ("lite1", "lite2"):
            model_dir(b)  # trained as the demo's Lite0 when not cached
        info["backbones"] = {b: record(b) for b in ("lite1", "lite2")}
    print(info["cpu"], flush=True)
    q = args.quick
    sets = [("demo-unseen", lambda: synthetic_set(range(40, 60), 8, 3, "query-options-demo")),
            ("synthetic-120", lambda: synthetic_set(range(300, 340 if q else 420), 5, 2, "query-options-120")),
            ("photos", lambda: photo_set(PHOTOS[:8] if q else PHOTOS))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in sets:
            gallery_items, queries = make()
            rows += measure(name, gallery_items, queries, min(args.timed, 15) if q else args.timed, tmp, options)
    return write(rows, info, q)


if __name__ == "__main__":
    main()
