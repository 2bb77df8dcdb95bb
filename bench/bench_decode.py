"""Decode, the next floor: full JPEG decode + resize vs libjpeg's DCT-scaled decode (`Global.reduced_decode`).

    python bench/bench_decode.py            # ~2-3 min on 2 cores
    python bench/bench_decode.py --quick    # one size, fewer images

Once the recognition model runs 2x faster (OpenVINO bf16 / int8), reading a gallery image costs as much
as embedding it. ppshitu decodes a JPEG at 1/2, 1/4 or 1/8 scale when its shorter side stays at least
the model's input (ppshitu/utils/image.py), for whole-image embeddings only. This measures, on one core
(gallery builds decode on worker threads beside the model):
  speed     ms per image of decode + the model's preprocessing, full vs reduced, for the demo model
            (160 px input) and PP-ShiTu's general model shape (224 px), on JPEGs of several sizes;
  accuracy  the trained demo model (models/demo/rec) on the demo's 20 unseen classes rendered at those
            sizes (dataset/synthetic.py, the demo's seed): leave-one-out recall@1, mAP, and the cosine
            of each image's reduced-decode embedding to its full-decode one.
Saved as bench/results/bench_decode.{md,json}.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (puts the repository root on sys.path)

import numpy as np  # noqa: E402

ROOT = harness.ROOT
CACHE = harness.BENCH / ".cache" / "data"
DEMO_REC = ROOT / "models/demo/rec"


def demo_set(size):
    """(paths, labels, uids) of the demo's unseen classes (40-59) rendered at `size` px."""
    from dataset.synthetic import make_recognition_set

    root = CACHE / f"decode_{size}"
    if not (root / "test_list.txt").is_file():
        make_recognition_set(root, num_classes=60, views_per_class=8, image_size=size, num_train_classes=40,
                             gallery_views=3, seed=0)
    rows = [line.split() for line in (root / "test_list.txt").read_text().splitlines() if line.strip()]
    return [str(root / r[0]) for r in rows], np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows])


def decode_ms(paths, preprocess, reduced, rounds=3):
    """Best-of-rounds ms/image of read_image + preprocess on this thread."""
    from ppshitu.utils.image import read_image

    side = preprocess.decode_side if reduced else None
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for p in paths:
            preprocess(read_image(p, min_side=side))
        best = min(best, (time.perf_counter() - start) * 1000 / len(paths))
    return best


def accuracy(rec, paths, labels, uids):
    from ppshitu.rec.metrics import Recallk, mAP, relevance
    from ppshitu.utils.image import read_image

    out, feats = {}, {}
    for reduced in (False, True):
        side = rec.preprocess.decode_side if reduced else None
        f = rec.predict([read_image(p, min_side=side) for p in paths])
        rel, npos, _ = relevance(f, labels, uids, f, labels, uids)
        out["reduced" if reduced else "full"] = {"recall1": Recallk(topk=1)(rel, npos)["recall1"],
                                                 "mAP": mAP()(rel, npos)["mAP"]}
        feats[reduced] = f
    cos = np.sum(feats[False] * feats[True], axis=1)
    out["cosine_mean"], out["cosine_min"] = float(cos.mean()), float(cos.min())
    return out


def interpretation(rows):
    """The prose under the table, computed from this run's rows: each claim is made only where they show it."""
    out = []
    reduced, unreduced = [], []
    for row in rows:
        for name in ("demo 160", "general 224"):
            if name in row:
                (unreduced if row["decoded_at"][name] == row["source"] else reduced).append(
                    (row["source"], name, row[name]["speedup"]))
    if reduced:
        lo, hi = min(s for *_, s in reduced), max(s for *_, s in reduced)
        faster = [r for r in reduced if r[2] >= 1.05]
        slower = [r for r in reduced if r[2] <= 0.95]
        text = (f"Speed, this run: where a reduced scale applied, read + preprocess ran at {lo:.2f}x-{hi:.2f}x the "
                f"full decode's speed ({len(faster)} of {len(reduced)} rows at least 5 % faster")
        text += (f"; slower: {', '.join(f'{src} {name} {s:.2f}x' for src, name, s in slower)}" if slower else "")
        out.append(text + "). The figures are the whole read + preprocessing, not the decode alone.")
    if unreduced:
        out.append(f"{len(unreduced)} row(s) decoded at full size (no 1/2-1/8 scale keeps the model's input): "
                   f"{', '.join(f'{src} {name}' for src, name, _ in unreduced)}; there the two paths are the same.")
    acc = sorted(((int(row["size"]), row["accuracy"]) for row in rows if "accuracy" in row), key=lambda t: t[0])
    if acc:
        d_r = [(a["reduced"]["recall1"] - a["full"]["recall1"]) * 100 for _, a in acc]
        d_m = [(a["reduced"]["mAP"] - a["full"]["mAP"]) * 100 for _, a in acc]
        cos = [a["cosine_mean"] for _, a in acc]
        if len(cos) > 1 and all(b < a for a, b in zip(cos, cos[1:])):
            out.append(f"The cosine of each image's reduced-decode embedding to its full-decode one fell as the JPEG "
                       f"grew ({cos[0]:.4f} at {acc[0][0]} px to {cos[-1]:.4f} at {acc[-1][0]} px): the full path "
                       f"resizes with the model's bilinear filter, which at large reductions samples few source "
                       f"pixels (aliasing), while the DCT-scaled decode averages each 8x8 block first, so the two "
                       f"model inputs differ more.")
        worst = min(min(d_r), min(d_m))
        verdict = ("no size lost more than 1 point" if worst >= -1.0 else
                   f"reduced decode lost up to {-worst:.2f} points")
        out.append(f"Retrieval, reduced minus full, this run: recall@1 {min(d_r):+.2f} to {max(d_r):+.2f} points, "
                   f"mAP {min(d_m):+.2f} to {max(d_m):+.2f} points ({verdict}).")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(harness.BENCH / "results"))
    args = p.parse_args(argv)
    import cv2

    from ppshitu.infer.preprocess import RecPreprocess
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.utils.image import read_image

    cv2.setNumThreads(1)
    sizes = [448] if args.quick else [320, 448, 896, 1600]
    rec = RecPredictor(str(DEMO_REC), cpu_threads=2)
    general = RecPreprocess([224, 224])  # PP-ShiTu's general recognition model's input
    t0, res = time.perf_counter(), []
    for size in sizes:
        paths, labels, uids = demo_set(size)
        sample = paths[:40] if args.quick else paths
        h, w = read_image(paths[0]).shape[:2]
        row = {"size": size, "images": len(paths), "decoded_at": {}}
        for name, pre in (("demo 160", rec.preprocess), ("general 224", general)):
            full, reduced = decode_ms(sample, pre, False), decode_ms(sample, pre, True)
            rh, rw = read_image(paths[0], min_side=pre.decode_side).shape[:2]
            row["decoded_at"][name] = f"{rw}x{rh}"
            row[name] = {"full_ms": full, "reduced_ms": reduced, "speedup": full / reduced}
        row["accuracy"] = accuracy(rec, paths, labels, uids)
        row["source"] = f"{w}x{h}"
        res.append(row)
        print(json.dumps(row), flush=True)
    info = harness.machine_info()
    lines = [f"# Decode: full vs libjpeg DCT-scaled (Global.reduced_decode){' (quick)' if args.quick else ''}", "",
             f"CPU: {info.get('cpu')}; decode on one thread (cv2.setNumThreads(1)); {time.perf_counter() - t0:.0f} s",
             "", "Speed: ms/image of read_image + the model's preprocessing (resize, normalise), best of 3 rounds.",
             "Accuracy: models/demo/rec (Paddle fp32) on the demo's 20 unseen classes rendered at each size, "
             "leave-one-out.", "",
             "| JPEG | preprocess | decoded at | full ms | reduced ms | speed-up | recall@1 full / reduced | "
             "mAP full / reduced | cosine mean / min |", "|---|---|---|---|---|---|---|---|---|"]
    for row in res:
        a = row["accuracy"]
        for name in ("demo 160", "general 224"):
            r = row[name]
            acc = (f"{a['full']['recall1']:.4f} / {a['reduced']['recall1']:.4f} | {a['full']['mAP']:.4f} / "
                   f"{a['reduced']['mAP']:.4f} | {a['cosine_mean']:.5f} / {a['cosine_min']:.5f}"
                   if name == "demo 160" else "| |")
            lines.append(f"| {row['source']} | {name} | {row['decoded_at'][name]} | {r['full_ms']:.2f} | "
                         f"{r['reduced_ms']:.2f} | {r['speedup']:.2f}x | {acc} |")
    lines += ["", *interpretation(res)]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    stem = "bench_decode_quick" if args.quick else "bench_decode"
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "rows": res}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
