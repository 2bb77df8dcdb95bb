"""Duplicate finding measured: tools/find_duplicates.py's pipeline (embeddings through the gallery's own
k-NN search, union-find groups) side by side with perceptual hashing (pHash, the ImageHash package) on
the same generated set of near-duplicates of real photos.

    .venv/bin/python bench/bench_duplicates.py [-c configs/inference/inference_general.yaml] [--quick]

The set (ppshitu/library/photos.py): scikit-image's photos of subjects (`BENCH_PHOTOS`: astronaut,
chelsea, coffee, rocket, camera — none of them used to calibrate) and crops of them that barely overlap
as distinct images, half of them with two edited copies each (JPEG quality 10-30, resized to 30-60 %,
10 % cropped, brightness/contrast, 2-6 degree rotation, or two of these); and, reported apart, crops of
texture photos (`BENCH_TEXTURES`: brick, gravel, tissue, text), a third with copies.
Everything is written as JPEG files (quality 92, shuffled names) and read back like a user's folder.

Scores are over pairs: a pair of images is predicted duplicate when the method puts them in one group
(what the user is shown), true when they come from the same original. Three rows: find_duplicates'
default (embedding k-NN candidates, linked by the cosine alone or by a lower cosine plus a pHash
check), the embedding alone, and pHash alone, each at its threshold chosen by max F1 on the
calibration sets (ppshitu/library/calibration.json,
made by ppshitu/library/calibrate.py); sweeps of each threshold follow. Times are seconds per 1,000
images on this machine (2 shared cores): decode + embed + hash + gallery add, then search + grouping;
decode + pHash, then all-pairs Hamming + grouping.
Writes bench/results/bench_duplicates.md and .json.
"""
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppshitu.cli import config_parser, load_cli_config  # noqa: E402
from ppshitu.schemas import INFER_SCHEMA  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
RESULTS = os.path.join(ROOT, "bench", "results")


def make_set(out, seed=0, quick=False):
    """Write the benchmark's images; returns [{file, subset, family, edit}]."""
    from ppshitu.library import photos

    rng = np.random.default_rng(seed)
    per_photo, per_texture = (6, 4) if quick else (20, 12)
    natural = photos.distinct_images(photos.BENCH_PHOTOS, per_photo, rng, size=256)
    texture = photos.distinct_images(photos.BENCH_TEXTURES, per_texture, rng, size=256)
    items = []
    for subset, images, share in (("natural", natural, 2), ("texture", texture, 3)):
        for name, rgb, family, kind in photos.near_duplicate_set(images, len(images) // share, 2, rng):
            items.append({"subset": subset, "family": f"{subset}/{family}", "edit": kind, "source": name, "rgb": rgb})
    order = rng.permutation(len(items))
    os.makedirs(out, exist_ok=True)
    rows = []
    for n, i in enumerate(order):
        it = items[i]
        file = os.path.join(out, f"img_{n:05d}.jpg")
        with open(file, "wb") as f:
            f.write(photos.jpeg_bytes(it["rgb"], 92))
        rows.append({k: v for k, v in it.items() if k != "rgb"} | {"file": file, "name": os.path.basename(file)})
    return rows


def truth_pairs(rows, subset=None):
    from ppshitu.library.photos import duplicate_pairs

    names = [r["name"] for r in rows]
    pairs = duplicate_pairs([r["family"] for r in rows])
    out = {tuple(sorted((names[a], names[b]))) for a, b in pairs}
    if subset:
        keep = {r["name"] for r in rows if r["subset"] == subset}
        out = {p for p in out if p[0] in keep}
    return out


def scores(pred, truth, names=None):
    if names is not None:
        pred = {p for p in pred if p[0] in names and p[1] in names}
        truth = {p for p in truth if p[0] in names}
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


# ------------------------------------------------------------------ the two methods
def run_embedding(cfg, rec, folder, work, thresholds, k):
    """ppshitu: index the folder (tools/index_folder.py's sync), then find_duplicates at each threshold."""
    from ppshitu.library import common
    from ppshitu.library.duplicates import find_duplicates, gallery_items, pairs_of
    from ppshitu.library.folder import read_state, sync_folder

    cfg["IndexProcess"]["index_dir"] = os.path.join(work, "index")
    t = time.perf_counter()
    sync = sync_folder(cfg, folder, rec=rec)
    index_s = time.perf_counter() - t
    gallery = common.open_store(cfg.IndexProcess, rec)
    state = read_state(cfg.IndexProcess)
    items, vectors = gallery_items(cfg, gallery, state, folder, rec=rec)
    out = {}
    for th in thresholds:
        t = time.perf_counter()
        report = find_duplicates(items, vectors, gallery, th, k)   # th: a NearRule or a cosine
        search_s = time.perf_counter() - t
        out[th] = {"pairs": {tuple(sorted((os.path.basename(a), os.path.basename(b))))
                             for a, b in pairs_of(report["groups"])}, "search_s": search_s,
                   "groups": len(report["groups"]), "phash_computed": report["phash_computed"]}
    return out, index_s, sync.count


def run_phash(rows, max_distances):
    import imagehash
    from PIL import Image

    from ppshitu.library.duplicates import UnionFind

    t = time.perf_counter()
    bits = []
    for r in rows:
        with Image.open(r["file"]) as im:
            bits.append(imagehash.phash(im.convert("RGB")).hash.flatten())
    hash_s = time.perf_counter() - t
    packed = np.packbits(np.asarray(bits, bool), axis=1).view(np.uint64)[:, 0]
    names = [r["name"] for r in rows]
    out = {}
    for h in max_distances:
        t = time.perf_counter()
        x = packed[:, None] ^ packed[None, :]
        dist = np.unpackbits(x.view(np.uint8).reshape(len(rows), len(rows), 8), axis=2).sum(2)
        uf = UnionFind(len(rows))
        for a, b in zip(*np.nonzero(np.triu(dist <= h, 1))):
            uf.union(int(a), int(b))
        groups = uf.groups()
        pairs = set()
        for g in groups:
            ns = sorted(names[i] for i in g)
            pairs |= {(a, b) for x_, a in enumerate(ns) for b in ns[x_ + 1:]}
        out[h] = {"pairs": pairs, "search_s": time.perf_counter() - t, "groups": len(groups)}
    return out, hash_s


# ------------------------------------------------------------------ main
def main(argv=None):
    p = config_parser(__doc__.splitlines()[0])
    p.set_defaults(config=CONFIG)
    for a in p._actions:
        if a.dest == "config":
            a.required = False
    p.add_argument("--quick", action="store_true", help="a small set (smoke run)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    from ppshitu.library import common
    from ppshitu.library.duplicates import NearRule
    from ppshitu.library.similarity import calibration_for, near_duplicate_rule

    common.setup_tool(cfg)
    rec, _ = common.predictors(cfg, detect=False)
    fingerprint = common.model_id(rec)
    entry = calibration_for(fingerprint)
    if entry is None:
        sys.exit(f"no calibration for model {fingerprint}: run python -m ppshitu.library.calibrate -c ... first")
    t_emb = float(entry["thresholds"]["near_duplicate"]["cosine"])
    t_ph = int(entry["phash"]["max_hamming"])
    hybrid = near_duplicate_rule(fingerprint)
    emb_sweep = sorted({t_emb, 0.88, 0.90, 0.92, 0.95, 0.97})
    h = hybrid
    hybrid_sweep = [hybrid] + [NearRule(a, c, m) for a, c, m in
                               ((h.cosine, h.candidate, h.max_hamming - 2), (h.cosine, h.candidate, h.max_hamming + 2),
                                (h.cosine, h.candidate + 0.1, h.max_hamming), (h.cosine - 0.02, h.candidate,
                                                                               h.max_hamming))]
    ph_sweep = sorted({t_ph, 6, 8, 10, 12, 16, 18})

    work = tempfile.mkdtemp(prefix="bench-dups-")
    try:
        folder = os.path.join(work, "photos")
        rows = make_set(folder, quick=args.quick)
        truth = truth_pairs(rows)
        by_subset = {s: {r["name"] for r in rows if r["subset"] == s} for s in ("natural", "texture")}
        emb, index_s, count = run_embedding(cfg, rec, folder, work, hybrid_sweep + emb_sweep, args.k)
        ph, hash_s = run_phash(rows, ph_sweep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(rows)
    per_k = 1000.0 / n

    def row(method, th, res, build_s):
        r = res[th]
        label = th.describe() if isinstance(th, NearRule) else th
        return {"method": method, "threshold": label, **scores(r["pairs"], truth),
                "phash_computed": r.get("phash_computed"),
                "natural": scores(r["pairs"], truth, by_subset["natural"]),
                "texture": scores(r["pairs"], truth, by_subset["texture"]),
                "recall_by_edit": edit_recall(r["pairs"], rows), "groups": r["groups"],
                "s_per_1000_build": round(build_s * per_k, 2), "s_per_1000_search": round(r["search_s"] * per_k, 3)}
    main_rows = [row("ppshitu find_duplicates default: embedding k-NN + pHash check", hybrid, emb, index_s),
                 row("ppshitu embedding alone (--no-phash)", t_emb, emb, index_s),
                 row("pHash alone (ImageHash, 64 bit, all pairs)", t_ph, ph, hash_s)]
    sweeps = [row("embedding + pHash", th, emb, index_s) for th in hybrid_sweep[1:]] + \
        [row("embedding", th, emb, index_s) for th in emb_sweep] + [row("pHash", h, ph, hash_s) for h in ph_sweep]
    result = {"images": n, "indexed": count, "true_pairs": len(truth),
              "distinct_originals": len({r["family"] for r in rows}),
              "subsets": {s: len(v) for s, v in by_subset.items()}, "k": args.k,
              "model": {"dir": os.path.relpath(cfg.Global.rec_inference_model_dir, ROOT), "fingerprint": fingerprint},
              "thresholds": {"embedding_cosine": t_emb, "phash_max_hamming": t_ph, "default_rule": hybrid.as_dict(),
                             "source": "ppshitu/library/calibration.json, by ppshitu/library/calibrate.py on "
                                       "other scikit-image photos and textures and the demo's unseen-class "
                                       "objects, edited"},
              "default": main_rows, "sweep": sweeps,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "omp_threads": os.environ.get("OMP_NUM_THREADS")},
              "quick": args.quick}
    text = render(result)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    name = "bench_duplicates_quick" if args.quick else "bench_duplicates"
    with open(os.path.join(args.out, name + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return result


def render(res):
    edits = sorted(res["default"][0]["recall_by_edit"])
    lines = [
        "# Duplicate finding: ppshitu embeddings vs pHash",
        "",
        f"`bench/bench_duplicates.py`{' --quick' if res['quick'] else ''}: {res['images']} JPEG files "
        f"({res['subsets']['natural']} from photos of subjects, {res['subsets']['texture']} from texture photos), "
        f"{res['distinct_originals']} distinct originals, {res['true_pairs']} true duplicate pairs. "
        f"Model `{res['model']['dir']}` ({res['model']['fingerprint']}), k = {res['k']} nearest per image. "
        f"Thresholds: find_duplicates' default rule {res['thresholds']['default_rule']['text']}; embedding "
        f"alone cosine >= {res['thresholds']['embedding_cosine']}; pHash alone Hamming <= "
        f"{res['thresholds']['phash_max_hamming']}; all chosen by max F1 on the calibration sets "
        f"({res['thresholds']['source']}); none of the photos here were used for that.",
        "",
        "Pairs are scored as the tools show them (two images in one group). Time: seconds per 1,000 images on "
        f"{res['machine']['cores']} cores (build: decode + embed + sha256 + gallery add, or decode + pHash; "
        "search: k-NN search + union-find, or all-pairs Hamming + union-find).",
        "",
        "| method | threshold | precision | recall | F1 | natural P / R | texture P / R | "
        + " | ".join(f"recall {e}" for e in edits) + " | s/1000 build | s/1000 search |",
        "|---|---|---|---|---|---|---|" + "---|" * len(edits) + "---|---|",
    ]

    def fmt(r):
        return (f"| {r['method']} | {r['threshold']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                f"{r['natural']['precision']:.3f} / {r['natural']['recall']:.3f} | "
                f"{r['texture']['precision']:.3f} / {r['texture']['recall']:.3f} | "
                + " | ".join(f"{r['recall_by_edit'].get(e, float('nan')):.2f}" for e in edits)
                + f" | {r['s_per_1000_build']:.1f} | {r['s_per_1000_search']:.2f} |")
    lines += [fmt(r) for r in res["default"]]
    lines += ["", "Threshold sweeps (the same runs):", "",
              "| method | threshold | precision | recall | F1 | natural P / R | texture P / R | "
              + " | ".join(f"recall {e}" for e in edits) + " | s/1000 build | s/1000 search |",
              "|---|---|---|---|---|---|---|" + "---|" * len(edits) + "---|---|"]
    lines += [fmt(r) for r in res["sweep"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
