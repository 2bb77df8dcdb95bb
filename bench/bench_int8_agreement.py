"""int8 that keeps fp32's answers: predict_system with the demo's trained models on held-out scenes, OpenVINO fp32
against int8 quantized plainly and with the agreement check / accuracy control (tools/quantize.py), and their speed
measured side by side in the same run.

    python bench/bench_int8_agreement.py                  # 150 held-out scenes; quantizes once (cached)
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/bench_int8_agreement.py   # as on an AVX2-only CPU (no VNNI, no bf16)
    python bench/bench_int8_agreement.py --quick          # 30 scenes, to check it runs

Data (dataset/synthetic.py make_scenes, 240x320, 1-4 objects, half of them pasted on real photographs):
  calibration  100 scenes of the 40 classes the models trained on (seed 101) for the detector; the recognition
               model's training images (data/demo/rec train_list.txt, as the demo generates them) plus the fp32
               detector's crops of those scenes. The check and the accuracy control see only these.
  held-out     scenes of the 20 classes neither model trained on (seed 202), never used in any choice; the gallery
               is each configuration's own, built from the demo's gallery views of those classes (score_thres
               0.75, detector threshold 0.4, as the demo).
A box of fp32's agrees when int8 answers a box at IoU >= 0.5 with the same label ("unknown" included). fp32 is
decided on a box when its top two labels are >= 0.02 apart and its score >= 0.02 from score_thres. Targets
(issue 26): >= 95 % agreement on decided boxes, F1 vs truth within 1 point of fp32's.
Saved as bench/results/bench_int8_agreement[_avx2][_quick].{md,json}.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (puts the repository root on sys.path)

import numpy as np  # noqa: E402

ROOT = harness.ROOT
CACHE = harness.BENCH / ".cache" / "int8"
DEMO = ROOT / "models" / "demo"
SCORE_THRES, DET_THRES, MARGIN = 0.75, 0.4, 0.02
NUM_TRAIN = 40
CALIB_SCENES, CALIB_SEED, HELDOUT_SEED = 100, 101, 202


# ---------------------------------------------------------------- data
def scenes(seed, n, classes):
    from dataset.synthetic import make_scenes

    root = CACHE / f"scenes_{seed}_{n}"
    ann = root / "s.json"
    if not ann.is_file():
        make_scenes(root, num_images=n, image_size=(240, 320), objects_per_image=(1, 4), object_classes=classes,
                    seed=seed, split="s", photo_backgrounds=0.5)
    coco = json.loads(ann.read_text())
    return ann, [str(root / "images" / im["file_name"]) for im in coco["images"]]


def rec_data():
    """The demo's recognition set (tools/demo.py make_data's, seed 0), generated into the cache if absent."""
    from dataset.synthetic import make_recognition_set

    root = ROOT / "data" / "demo" / "rec"
    if not (root / "gallery_list.txt").is_file():
        root = CACHE / "demo_rec"
        if not (root / "gallery_list.txt").is_file():
            make_recognition_set(root, num_classes=60, views_per_class=8, image_size=96, num_train_classes=NUM_TRAIN,
                                 gallery_views=3, seed=0)
    return root


def scene_crops(paths, out_dir):
    """The fp32 detector's boxes of the calibration scenes, cropped and written (recognition calibration: the
    crops it will be asked about, photo backgrounds included)."""
    import cv2

    from ppshitu.infer.det import DetPredictor
    from ppshitu.utils.image import read_image

    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        return sorted(str(p) for p in out_dir.iterdir())
    det = DetPredictor(str(DEMO / "det"), threshold=DET_THRES, max_det_results=5, backend="openvino")
    for k, path in enumerate(paths):
        rgb = read_image(path)
        for j, r in enumerate(det.predict(rgb)):
            x1, y1, x2, y2 = (int(v) for v in r[:4])
            if x2 - x1 >= 8 and y2 - y1 >= 8:
                cv2.imwrite(str(out_dir / f"{k:04d}_{j}.png"), rgb[y1:y2, x1:x2, ::-1])
    return sorted(str(p) for p in out_dir.iterdir())


# ---------------------------------------------------------------- models
VARIANTS = {  # name -> quantize_model keyword arguments
    "plain": dict(accuracy_control=False, overflow_fix="first_layer_only"),  # as before issue 26
    "checked": dict(accuracy_control="sensitivity"),  # tools/quantize.py's defaults (overflow fix on every layer)
}


def quantized(kind, variant, images):
    from ppshitu.infer.quantize import QUANTIZER_VERSION, quantize_model
    from ppshitu.infer.spec import read_spec

    out = CACHE / "models" / f"{kind}_{variant}"
    have = read_spec(str(out)) if (out / "inference.yml").is_file() else None
    if have is None or have["calibration"].get("quantizer_version") != QUANTIZER_VERSION \
            or have.get("quantized_from") != read_spec(str(DEMO / kind))["fingerprint"]:
        t = time.perf_counter()
        quantize_model(str(DEMO / kind), images, str(out), model_type=kind, subset_size=300, overwrite=True,
                       threshold=DET_THRES, **VARIANTS[variant])
        print(f"quantized {kind} ({variant}) in {time.perf_counter() - t:.0f} s", flush=True)
    return out, json.loads((out / "quantize_report.json").read_text())


# ---------------------------------------------------------------- predict_system
def run_system(rec_dir, det_dir, precision, rec_root, paths):
    """(answers per scene, gallery labels, seconds of predict_system over the scenes) of one configuration."""
    from ppshitu.config import load_config
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.system import RecognitionSystem

    with tempfile.TemporaryDirectory() as tmp:
        ov = {"Global.rec_inference_model_dir": rec_dir, "Global.det_inference_model_dir": det_dir,
              "Global.inference_backend": "openvino", "Global.precision": precision, "Global.threshold": DET_THRES,
              "IndexProcess.score_thres": SCORE_THRES, "IndexProcess.index_dir": f"{tmp}/index",
              "IndexProcess.image_root": f"{rec_root}/", "IndexProcess.data_file": f"{rec_root}/gallery_list.txt",
              "IndexProcess.index_operation": "new"}
        cfg = load_config(ROOT / "configs/inference/inference_general.yaml", [f"{k}={v}" for k, v in ov.items()],
                          INFER_SCHEMA)
        build_gallery(cfg)
        system = RecognitionSystem.from_config(cfg)
        list(system.predict_paths(paths[:5]))  # warm: compiled shapes
        t = time.perf_counter()
        answers = [res for _, res in system.predict_paths(paths)]
        return answers, system.gallery.labels(), time.perf_counter() - t


def decided(result):
    top = [t["score"] for t in result["topk"]]
    labels = [t["label"] for t in result["topk"]]
    if not top:
        return False
    second = next((s for s, lab in zip(top[1:], labels[1:]) if lab != labels[0]), None)
    return abs(top[0] - SCORE_THRES) >= MARGIN and (second is None or top[0] - second >= MARGIN)


def agreement(ref, got):
    from ppshitu.utils.boxes import box_iou

    n = {"all": 0, "all_agree": 0, "decided": 0, "decided_agree": 0}
    for mine, theirs in zip(ref, got):
        for r in mine:
            ok = any(box_iou(r["bbox"], o["bbox"]) >= 0.5 and o["rec_docs"] == r["rec_docs"] for o in theirs)
            n["all"] += 1
            n["all_agree"] += ok
            if decided(r):
                n["decided"] += 1
                n["decided_agree"] += ok
    n["agreement_all"] = n["all_agree"] / n["all"] if n["all"] else None
    n["agreement_decided"] = n["decided_agree"] / n["decided"] if n["decided"] else None
    return n


def models_variants(models):
    return {n.split()[-1] for n in models if n.startswith("int8 ")}


def auto_layout(checked):
    """(rec dir, det dir) laid out as a user's after tools/quantize.py with its default --out: each fp32 model
    with its checked int8 model beside (<dir>_int8), for Global.precision auto to choose from."""
    root = CACHE / "auto"
    root.mkdir(parents=True, exist_ok=True)
    for kind, int8 in (("rec", checked[0]), ("det", checked[1])):
        for link, target in ((root / kind, DEMO / kind), (root / f"{kind}_int8", Path(int8))):
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target.resolve(), target_is_directory=True)
    return str(root / "rec"), str(root / "det")


# ---------------------------------------------------------------- speed
def model_speed(specs, kind, sample_path, rounds):
    """Model alone, alternating blocks (bench_runtimes.speed): rec batch 32, det batch 1."""
    import bench_runtimes as br

    sample = (br.rec_sample if kind == "rec" else br.det_sample)(DEMO / kind, sample_path)
    return br.speed(specs, kind, 32 if kind == "rec" else 1, sample, 2, rounds, 5)


# ---------------------------------------------------------------- cheaper knobs
KNOBS = [  # (label, quantize_model keyword arguments), each quantized without the accuracy control
    ("performance preset, overflow fix first layer, full bias correction, first layer f32",
     dict(overflow_fix="first_layer_only")),
    ("+ overflow fix on every layer", dict(overflow_fix="enable")),
    ("+ preset mixed (asymmetric activations)", dict(preset="mixed")),
    ("+ fast bias correction", dict(fast_bias_correction=True)),
    ("+ the last layer (heads) f32", dict(float_tail=1)),
    ("+ the first 4 layers f32", dict(float_layers=4)),
    ("+ a third of the calibration images", dict(subset_size=-3)),
]


def knobs(kind, images):
    """The calibration check's agreement for each knob (KNOBS), each one change to the first row's settings."""
    import shutil

    from ppshitu.infer.quantize import quantize_model

    out, base = [], dict(KNOBS[0][1])
    for label, kw in KNOBS:
        kw = dict(base, **kw)
        n = len(images) // 3 if kw.pop("subset_size", 0) == -3 else len(images)
        path = CACHE / "knobs" / kind
        t = time.perf_counter()
        quantize_model(str(DEMO / kind), images, str(path), model_type=kind, subset_size=n, overwrite=True,
                       threshold=DET_THRES, accuracy_control=False, **kw)
        rep = json.loads((path / "quantize_report.json").read_text())["plain"]
        out.append({"knob": label, "agreement": rep["agreement"], "kept": rep["kept"], "counted": rep["counted"],
                    "cosine_min": rep.get("cosine_min"), "seconds": time.perf_counter() - t})
        print(f"{kind} {label}: {rep['agreement']:.4f}", flush=True)
        shutil.rmtree(path)
    return out


# ---------------------------------------------------------------- main
def calibration_sets():
    """(rec root, detector calibration scenes, recognition calibration images)."""
    rec_root = rec_data()
    _, calib = scenes(CALIB_SEED, CALIB_SCENES, range(NUM_TRAIN))
    train = [str(rec_root / line.split()[0]) for line in (rec_root / "train_list.txt").read_text().splitlines()]
    crops = scene_crops(calib, CACHE / "calib_crops")
    rec_calib = [p for pair in zip(train, crops) for p in pair] + train[len(crops):] + crops[len(train):]
    return rec_root, calib, rec_calib


def measure(args):
    from ppshitu.evaluation.system_metrics import evaluate, load_coco_scenes

    rec_root, calib, rec_calib = calibration_sets()
    ann, held = scenes(HELDOUT_SEED, args.scenes, range(NUM_TRAIN, 60))
    truth = load_coco_scenes(str(ann))
    train = [p for p in rec_calib if "calib_crops" not in p]
    models = {"fp32": (str(DEMO / "rec"), str(DEMO / "det"), None, None)}
    for variant in args.variants.split(","):
        rec_dir, rec_report = quantized("rec", variant, rec_calib)
        det_dir, det_report = quantized("det", variant, calib)
        models[f"int8 {variant}"] = (str(rec_dir), str(det_dir), rec_report, det_report)
    if "checked" in models_variants(models):
        models["auto"] = auto_layout(models["int8 checked"]) + (None, None)
    res = {"configs": {}, "scenes": len(held), "calibration_scenes": len(calib), "rec_calibration": len(rec_calib)}
    answers = {}
    for name, (rec_dir, det_dir, rec_report, det_report) in models.items():
        print(f"predict_system: {name}", flush=True)
        precision = {"fp32": "fp32", "auto": "auto"}.get(name, "int8")
        got, labels, seconds = run_system(rec_dir, det_dir, precision, rec_root, held)
        answers[name] = got
        row = {"f1": evaluate(got, truth, labels)["f1"], "seconds": seconds}
        if name == "auto":
            from ppshitu.infer.precision import choose_precision

            row["auto_choice"] = {k: choose_precision(d, k, "openvino", "auto").precision
                                  for k, d in (("rec", rec_dir), ("det", det_dir))}
        for kind, rep in (("rec", rec_report), ("det", det_report)):
            if rep:
                row[kind] = {k: rep.get(k) for k in ("agreement", "passed", "target", "f32_layers", "checked_on")}
                row[kind]["plain_agreement"] = rep["plain"]["agreement"]
        res["configs"][name] = row
    for name in models:
        res["configs"][name]["held_out"] = agreement(answers["fp32"], answers[name])
    specs = lambda kind: [(n, m[0 if kind == "rec" else 1], "openvino", "fp32" if n == "fp32" else "int8")  # noqa
                          for n, m in models.items() if n != "auto"]
    res["speed"] = {"rec": model_speed(specs("rec"), "rec", train[0], args.rounds),
                    "det": model_speed(specs("det"), "det", held[0], args.rounds)}
    return res


def render(res, elapsed):
    from ppshitu.utils.cpu import describe, isa_cap

    cap = isa_cap()
    isa = f"ONEDNN_MAX_CPU_ISA={cap}: as an AVX2-only CPU" if cap else "native ISA"
    lines = [f"# int8 that keeps fp32's answers ({isa}, {elapsed:.0f} s)", "",
             describe() + (f" (kernels capped at {cap}: OpenVINO's CPU plugin honours ONEDNN_MAX_CPU_ISA)" if cap
                           else ""), "",
             f"Held out: {res['scenes']} scenes of 20 classes neither model trained on; calibration: "
             f"{res['calibration_scenes']} scenes of the training classes (detector) and {res['rec_calibration']} "
             f"training images and crops of those scenes (recognition). Against OpenVINO fp32 in the same run.", "",
             "| model | det check on calibration (plain -> final) | rec check on calibration (plain -> final) | "
             "held-out agreement, decided boxes | held-out agreement, all boxes | F1 vs truth | ΔF1 (pt) | "
             "predict_system s | int8/fp32 speed |",
             "|---|---|---|---|---|---|---|---|---|"]
    ref = res["configs"]["fp32"]
    for name, row in res["configs"].items():
        h = row["held_out"]
        if name == "auto":
            name = "auto (" + ", ".join(f"{k} {v}" for k, v in row["auto_choice"].items()) + ")"
        chk = lambda k: (f"{row[k]['plain_agreement']:.4f} -> {row[k]['agreement']:.4f} "  # noqa: E731
                         f"({'passed' if row[k]['passed'] else 'failed'} {row[k]['target']}; "
                         f"{len(row[k]['f32_layers'])} f32)" if k in row else "—")
        lines.append(f"| {name} | {chk('det')} | {chk('rec')} | {h['agreement_decided']:.4f} ({h['decided_agree']} "
                     f"of {h['decided']}) | {h['agreement_all']:.4f} ({h['all_agree']} of {h['all']}) | "
                     f"{row['f1']:.4f} | {100 * (row['f1'] - ref['f1']):+.2f} | {row['seconds']:.1f} | "
                     f"{ref['seconds'] / row['seconds']:.2f}x |")
    checked_on = sorted({row[k]["checked_on"] for row in res["configs"].values() for k in ("det", "rec")
                         if row.get(k, {}).get("checked_on")})
    if checked_on:  # the models are cached: their checks ran where (and under the ISA cap with which) they were made
        lines += ["", "Calibration checks as quantize_report.json recorded them when the model was quantized, on: "
                  + " / ".join(checked_on)]
    lines += ["", "Model alone (median of alternating blocks, 2 threads): rec batch 32, det batch 1.", "",
              "| model | rec img/s | rec vs fp32 | det ms/img | det vs fp32 |", "|---|---|---|---|---|"]
    sp = res["speed"]
    for name in sp["rec"]:
        r, d = sp["rec"].get(name, {}), sp["det"].get(name, {})
        if "error" in r or "error" in d:
            lines.append(f"| {name} | {r.get('error', '')} | | {d.get('error', '')} | |")
            continue
        rec_ratio = r["images_per_s"] / sp["rec"]["fp32"]["images_per_s"]
        lines.append(f"| {name} | {r['images_per_s']:.1f} | {rec_ratio:.2f}x | {d['ms_per_image']:.2f} | "
                     f"{sp['det']['fp32']['ms_per_image'] / d['ms_per_image']:.2f}x |")
    for name, row in res["configs"].items():
        if name == "auto":
            lines.append(f"\nauto: Global.precision auto with each checked int8 model beside its fp32 one: "
                         f"{row['auto_choice']}")
        for kind in ("det", "rec"):
            if kind in row:
                lines.append(f"\n{name} {kind}: layers kept in f32: {', '.join(row[kind]['f32_layers']) or 'none'}")
    lines += ["", "A decided box: fp32's top two labels >= 0.02 apart and its score >= 0.02 from score_thres (0.75). "
              "Targets: >= 0.95 on decided boxes, F1 within 1 point of fp32's. plain: NNCF PTQ as before (first "
              "layer f32, overflow fix on the first layer only), no check; checked: tools/quantize.py's default "
              "(the overflow fix on every layer, so int8 answers alike on CPUs with and without VNNI; the agreement "
              "check and the layers that add most error back in f32, 1, 2, 4 ..., until 0.99 on calibration: "
              "ppshitu/infer/quantize_control.py)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=150)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--variants", default=",".join(VARIANTS), help="int8 variants to run (VARIANTS)")
    p.add_argument("--knobs", action="store_true", help="only the cheaper knobs' calibration agreement (KNOBS)")
    args = p.parse_args(argv)
    if args.knobs:
        return run_knobs()
    if args.quick:
        args.scenes, args.rounds = 30, 2
    from ppshitu.utils.cpu import isa_cap

    t = time.perf_counter()
    res = measure(args)
    text = render(res, time.perf_counter() - t)
    print(text)
    name = "bench_int8_agreement" + (f"_{isa_cap().lower()}" if isa_cap() else "") + ("_quick" if args.quick else "")
    out = harness.BENCH / "results"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


def run_knobs():
    from ppshitu.utils.cpu import describe

    _, calib, rec_calib = calibration_sets()
    res = {"det": knobs("det", calib), "rec": knobs("rec", rec_calib)}
    lines = ["# int8 knobs: agreement with fp32 on the calibration set, no accuracy control", "", describe(), "",
             "| model | knob | agreement | kept / counted | rec cosine min | quantize s |", "|---|---|---|---|---|---|"]
    for kind, rows in res.items():
        for r in rows:
            cos = f"{r['cosine_min']:.4f}" if r["cosine_min"] is not None else ""
            lines.append(f"| {kind} | {r['knob']} | {r['agreement']:.4f} | {r['kept']} / {r['counted']} | {cos} | "
                         f"{r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (harness.BENCH / "results" / "bench_int8_knobs.md").write_text(text, encoding="utf-8")
    (harness.BENCH / "results" / "bench_int8_knobs.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
