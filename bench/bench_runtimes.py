"""Runtime x precision: Paddle Inference and OpenVINO, fp32 / bf16 / int8, speed and accuracy.

    python bench/bench_runtimes.py            # ~5-10 min on 2 shared cores
    python bench/bench_runtimes.py --quick    # fewer rounds and images, to check it runs

Accuracy, on the trained demo models (models/demo/rec: EfficientNet-Lite0 fine-tuned, 512-d, 160 px, PIR;
models/demo/det: PicoDet, 192 px, PIR), against Paddle fp32 on the same inputs:
  rec  embedding cosine (mean / min) and recall@1 on the demo's unseen classes (40 fresh views of each,
       every image queried against the others, leave-one-out by uid); int8 calibrated on train_list.txt
       (the training classes), so no test image is seen by the quantizer
  det  AP50 (COCO, pycocotools) on held-out scenes of the training classes (dataset/synthetic.py
       make_scenes, seed 11); int8 calibrated on other scenes (seed 12)
Speed, model alone on preprocessed input (median of alternating blocks, each block after one discarded
call), on the demo models and on the real-size bench models (bench_models.py, random weights):
MobileNetV1@224 + 512-d FC (batch 32) and PicoDet-LCNet x2.5 @640 (batch 1), each in the legacy format
(OpenVINO reads it directly) and in PIR (converted once to an IR, the path ppshitu's own exports take).
Saved as bench/results/bench_runtimes.{md,json} (quick: bench_runtimes_quick.*).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (puts the repository root on sys.path)

import numpy as np  # noqa: E402

ROOT = harness.ROOT
CACHE = harness.BENCH / ".cache"
DEMO_REC, DEMO_DET = ROOT / "models/demo/rec", ROOT / "models/demo/det"
REC_DATA = ROOT / "data/demo/rec"
# "bf16" is the runtime's bf16 as users get it (OpenVINO: the first layers kept f32, Global.bf16_f32_layers);
# "bf16-all" is every layer in bf16, the row that shows what keeping them costs and gains
CONFIGS = [("paddle", "fp32"), ("paddle", "bf16"), ("openvino", "fp32"), ("openvino", "bf16-all"),
           ("openvino", "bf16"), ("openvino", "int8")]
MOBILENETV1_GFLOP = 1.14
NUM_TRAIN_CLASSES = 40  # the demo: classes 0-39 train both models, 40-59 are unseen (tools/demo.py)


def _short(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:100] if text else ''}"


# ---------------------------------------------------------------- data and models
REC_TEST_VIEWS = 40  # per unseen class: 800 queries, so one changed answer is 0.125 point of recall@1


def rec_test_set():
    """(paths, labels, uids) of fresh views of the demo's 20 unseen classes (the demo set's 8 views per class give
    160 queries: one changed answer there is 0.625 point, more than the 0.5-point limit being measured)."""
    from dataset.synthetic import make_recognition_set

    root = CACHE / "data" / f"runtime_rec_test_{REC_TEST_VIEWS}"
    if not (root / "test_list.txt").is_file():
        make_recognition_set(root, num_classes=60, views_per_class=REC_TEST_VIEWS, image_size=96,
                             num_train_classes=NUM_TRAIN_CLASSES, gallery_views=1, seed=31)
    rows = [line.split() for line in (root / "test_list.txt").read_text().splitlines() if line.strip()]
    return [str(root / r[0]) for r in rows], np.array([int(r[1]) for r in rows]), \
        np.array([int(r[2]) for r in rows])


def scenes(split, seed, n, unseen=False):
    """(coco json, image paths) of held-out scenes of the training classes (`unseen`: of the 20 classes
    neither model trained on, 1-4 objects each, as the demo's)."""
    from dataset.synthetic import make_scenes

    root = CACHE / "data" / f"runtime_{'system_' if unseen else ''}scenes_{split}_{seed}_{n}"
    ann = root / f"{split}.json"
    if not ann.is_file():
        make_scenes(root, num_images=n, image_size=(240, 320), objects_per_image=(1, 4) if unseen else (1, 5),
                    object_classes=range(NUM_TRAIN_CLASSES, 60) if unseen else range(NUM_TRAIN_CLASSES),
                    seed=seed, split=split)
    coco = json.loads(ann.read_text())
    return ann, [str(root / "images" / im["file_name"]) for im in coco["images"]]


def quantized(name, src, images, kind, subset=300):
    from ppshitu.infer.quantize import QUANTIZER_VERSION, quantize_model
    from ppshitu.infer.spec import read_spec

    out = CACHE / "models" / name
    fp = read_spec(str(src))["fingerprint"]
    have = read_spec(str(out)) if (out / "inference.yml").is_file() else None
    if (have is None or have.get("quantized_from") != fp or have["calibration"]["images"] < min(subset, len(images))
            or have["calibration"].get("quantizer_version") != QUANTIZER_VERSION):
        t = time.perf_counter()
        quantize_model(str(src), images, str(out), model_type=kind, subset_size=subset, overwrite=True)
        print(f"quantized {src} -> {out} in {time.perf_counter() - t:.0f} s", flush=True)
    return out


def model_dir(base, int8_dir, precision):
    return str(int8_dir if precision == "int8" else base)


def runtime_args(precision):
    """A row's precision label -> runtime options (ppshitu.infer.runtime)."""
    if precision == "bf16-all":
        return {"precision": "bf16", "bf16_f32_layers": 0}
    return {"precision": precision}


# ---------------------------------------------------------------- accuracy
def rec_accuracy(threads, int8_dir):
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.rec.metrics import Recallk, relevance
    from ppshitu.utils.image import read_image

    paths, labels, uids = rec_test_set()
    images = [read_image(p) for p in paths]
    out, ref = {}, None
    for backend, precision in CONFIGS:
        key = f"{backend} {precision}"
        try:
            rec = RecPredictor(model_dir(DEMO_REC, int8_dir, precision), backend=backend, cpu_threads=threads,
                               **runtime_args(precision))
            feats = rec.predict(images)
        except Exception as e:  # noqa: BLE001 -- a failing runtime is a row, not a lost run
            out[key] = {"error": _short(e)}
            continue
        rel, npos, _ = relevance(feats, labels, uids, feats, labels, uids)
        row = {"recall1": Recallk(topk=1)(rel, npos)["recall1"]}
        if ref is None:
            ref = feats
        cos = np.sum(ref * feats, axis=1)
        row.update(cos_mean=float(cos.mean()), cos_min=float(cos.min()))
        out[key] = row
    return out, len(paths), len(set(labels.tolist()))


def det_accuracy(threads, int8_dir, test_json, test_paths):
    from ppshitu.det.coco import load_coco
    from ppshitu.det.metrics import coco_ap, to_coco_results
    from ppshitu.infer.det import DetPredictor
    from ppshitu.utils.image import read_image

    coco = load_coco(str(test_json))
    by_path = {os.path.basename(r.path): r.image_id for r in coco.records}
    images = [(by_path[os.path.basename(p)], read_image(p)) for p in test_paths]
    out = {}
    for backend, precision in CONFIGS:
        key = f"{backend} {precision}"
        try:
            det = DetPredictor(model_dir(DEMO_DET, int8_dir, precision), threshold=0.0, max_det_results=100,
                               backend=backend, cpu_threads=threads, **runtime_args(precision))
            results = []
            for image_id, rgb in images:
                chw, im_shape, scale_factor = det.preprocess(rgb)
                bbox, bbox_num = det.run(chw[None], im_shape[None], scale_factor[None])
                results += to_coco_results(bbox, bbox_num, [image_id])
        except Exception as e:  # noqa: BLE001
            out[key] = {"error": _short(e)}
            continue
        out[key] = coco_ap(coco, results)
    return out


def system_agreement(threads, rec_int8, det_int8, n_scenes):
    """predict_system's answers under each runtime x precision against Paddle fp32's, box by box: each
    gallery is built by that configuration's own rec model from the demo's gallery views of its 20
    unseen classes, and queried with scenes of those classes (demo thresholds: score 0.75, detector 0.4).
    A Paddle fp32 box agrees when the other answer has a box at IoU >= 0.5 with the same label
    ("unknown" included). A disagreement on a near tie (Paddle fp32's top two gallery labels within
    NEAR_TIE of each other, or its score within NEAR_TIE of score_thres) is counted apart: there fp32's
    own answer is a coin toss. Each configuration's F1 against the scenes' truth says whether the
    answers got worse or only different."""
    import tempfile

    from ppshitu.config import load_config
    from ppshitu.evaluation.system_metrics import evaluate, load_coco_scenes
    from ppshitu.gallery.builder import build_gallery
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.system import RecognitionSystem
    from ppshitu.utils.boxes import box_iou

    ann, paths = scenes("bench", 21, n_scenes, unseen=True)
    truth = load_coco_scenes(str(ann))
    assert [t[0] for t in truth] == paths
    answers, out, f1 = {}, {}, {}
    for backend, precision in CONFIGS:
        key = f"{backend} {precision}"
        with tempfile.TemporaryDirectory() as tmp:
            overrides = {"Global.rec_inference_model_dir": model_dir(DEMO_REC, rec_int8, precision),
                         "Global.det_inference_model_dir": model_dir(DEMO_DET, det_int8, precision),
                         "Global.inference_backend": backend,
                         **{f"Global.{k}": v for k, v in runtime_args(precision).items()},
                         "Global.cpu_num_threads": threads, "Global.threshold": 0.4,
                         "IndexProcess.score_thres": SCORE_THRES, "IndexProcess.index_dir": f"{tmp}/index",
                         "IndexProcess.image_root": f"{REC_DATA}/", "IndexProcess.data_file":
                         f"{REC_DATA}/gallery_list.txt", "IndexProcess.index_operation": "new"}
            try:
                cfg = load_config(ROOT / "configs/inference/inference_general.yaml",
                                  [f"{k}={v}" for k, v in overrides.items()], INFER_SCHEMA)
                build_gallery(cfg)
                system = RecognitionSystem.from_config(cfg)
                answers[key] = [res for _, res in system.predict_paths(paths)]
                f1[key] = evaluate(answers[key], truth, system.gallery.labels())["f1"]
            except Exception as e:  # noqa: BLE001 -- a failing runtime is a row
                out[key] = {"error": _short(e)}
    ref = answers.get("paddle fp32")
    for key, got in answers.items():
        if ref is None:
            break
        total = agree = ties = 0
        for mine, theirs in zip(ref, got):
            for r in mine:
                total += 1
                if any(box_iou(r["bbox"], o["bbox"]) >= 0.5 and o["rec_docs"] == r["rec_docs"] for o in theirs):
                    agree += 1
                else:
                    ties += _near_tie(r, SCORE_THRES)
        out[key] = {"boxes": total, "agree": agree, "agreement": agree / total if total else None,
                    "near_ties": ties, "agreement_beyond_ties": (agree + ties) / total if total else None,
                    "f1": f1[key]}
    return out, len(paths)


NEAR_TIE = 0.02     # cosine
SCORE_THRES = 0.75  # the demo's (tools/demo.py)


def _near_tie(result, score_thres):
    top = [t["score"] for t in result["topk"]]
    labels = [t["label"] for t in result["topk"]]
    second = next((s for s, lab in zip(top[1:], labels[1:]) if lab != labels[0]), None)
    return bool(top) and (abs(top[0] - score_thres) < NEAR_TIE or (second is not None and top[0] - second < NEAR_TIE))


# ---------------------------------------------------------------- speed
def feeds_for(runtime, kind, batch, sample):
    if kind == "rec":
        return {runtime.input_names[0]: np.ascontiguousarray(np.repeat(sample[None], batch, axis=0))}
    chw, im_shape, scale_factor = sample
    f = {"image": np.repeat(chw[None], batch, 0), "im_shape": np.repeat(im_shape[None], batch, 0),
         "scale_factor": np.repeat(scale_factor[None], batch, 0)}
    return {n: np.ascontiguousarray(f[n]) for n in runtime.input_names}


def speed(specs, kind, batch, sample, threads, rounds, reps):
    """specs: [(label, model_dir, backend, precision)] -> {label: {ms_per_batch, per_image...}|{error}}."""
    from ppshitu.infer.runtime import load_runtime

    loaded, out = [], {}
    for label, path, backend, precision in specs:
        try:
            rt = load_runtime(str(path), backend, cpu_threads=threads, **runtime_args(precision))
            f = feeds_for(rt, kind, batch, sample)
            rt.run(f)
            loaded.append((label, rt, f))
        except Exception as e:  # noqa: BLE001
            out[label] = {"error": _short(e)}
    times = {label: [] for label, _, _ in loaded}
    for _ in range(rounds):
        for label, rt, f in loaded:
            rt.run(f)  # discarded: the other runtime's threads may still be spinning
            for _ in range(reps):
                t = time.perf_counter()
                rt.run(f)
                times[label].append(time.perf_counter() - t)
    for label, _, _ in loaded:
        sec = float(np.median(times[label]))
        out[label] = {"ms_per_batch": sec * 1e3, "images_per_s": batch / sec, "ms_per_image": sec * 1e3 / batch,
                      "calls": len(times[label])}
    return out


def rec_sample(path, image_path):
    from ppshitu.infer.preprocess import RecPreprocess
    from ppshitu.infer.spec import read_spec
    from ppshitu.utils.image import read_image

    spec = read_spec(str(path))
    return RecPreprocess.from_spec(spec)(read_image(image_path))


def det_sample(path, image_path):
    from ppshitu.infer.det import DetPreprocess
    from ppshitu.infer.spec import read_spec
    from ppshitu.utils.image import read_image

    return DetPreprocess.from_spec(read_spec(str(path)))(read_image(image_path))


# ---------------------------------------------------------------- report
def cpu_facts():
    from ppshitu.infer.openvino_runtime import bf16_support
    from ppshitu.utils.cpu import cpu_flags

    flags = cpu_flags()
    try:
        import openvino as ov
        caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as e:  # noqa: BLE001
        caps = [f"openvino unavailable: {_short(e)}"]
    return {"flags": sorted(f for f in flags if f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                                                       "amx_int8", "amx_tile", "avx_vnni", "avx2")),
            "openvino_capabilities": caps, "bf16": bf16_support()[1]}


def _f(v, fmt="{:.1f}"):
    return "n/a" if v is None else fmt.format(v)


def notes(res):
    """The notes under the tables: what each row is, and what this run's figures say about keeping bf16's first layers
    in f32, computed from them (no figure from another run)."""
    out = [f"- bf16 and the float parts of int8 models run in bf16 only on a CPU with native bf16 "
           f"(avx512_bf16 / amx_bf16); elsewhere bf16 is refused and int8's float parts run in f32. This CPU: "
           f"{res['cpu'].get('bf16')}.",
           f"- OpenVINO bf16 keeps the first Global.bf16_f32_layers (default {res.get('bf16_f32_layers')}) "
           f"convolution/matmul layers from the input in f32; bf16-all runs every layer in bf16."]
    agree = res.get("system_agreement", {})
    kept, every = agree.get("openvino bf16", {}), agree.get("openvino bf16-all", {})
    if kept.get("agreement") is not None and every.get("agreement") is not None:
        a_kept, a_all = kept["agreement"], every["agreement"]
        if a_kept > a_all:
            said = f"keeping them in f32 raised the agreement from {a_all:.1%} (bf16-all) to {a_kept:.1%}"
        elif a_kept < a_all:
            said = f"bf16-all agreed more ({a_all:.1%}) than bf16 with its first layers in f32 ({a_kept:.1%})"
        else:
            said = f"both agreed on {a_kept:.1%}: keeping them in f32 changed nothing measurable"
        out.append(f"  This run, predict_system's labels against Paddle fp32's: {said}.")
    det = res.get("det_accuracy", {})
    base, d_kept, d_all = (det.get(k, {}).get("AP50") for k in ("paddle fp32", "openvino bf16", "openvino bf16-all"))
    if None not in (base, d_kept, d_all):
        out.append(f"  Detector AP50 against Paddle fp32's, this run: bf16 {(d_kept - base) * 100:+.2f} points, "
                   f"bf16-all {(d_all - base) * 100:+.2f}.")
    out += ["- Paddle bf16 is `enable_mkldnn_bfloat16()`; Paddle runs no int8 model (refused).",
            "- The PIR rows on OpenVINO go through paddle2onnx (opset 17: hard-swish stays one HSwish op) and an IR "
            "cached per program; ppshitu/infer/openvino_runtime.py says why opset 17 (a profile from an earlier run, "
            "not this one)."]
    return out


def render(res, info, elapsed, quick):
    lines = [f"# Runtime x precision ({'quick' if quick else 'full'} run, {elapsed:.0f} s)", "",
             f"CPU: {info['cpu']} (family/model {info['cpu_family_model']}), {info['cores']} cores, "
             f"{res['threads']} threads; flags: {', '.join(res['cpu']['flags'])}; OpenVINO CPU capabilities: "
             f"{', '.join(res['cpu']['openvino_capabilities'])}; load average at start "
             f"{info['load_avg_at_start'][0]:.2f}, at end {res['load_avg_at_end'][0]:.2f} (other work on the "
             f"machine slows every row alike: compare within a table)",
             "packages: " + ", ".join(f"{k} {v}" for k, v in res["packages"].items()), ""]
    acc_r, acc_d = res["rec_accuracy"], res["det_accuracy"]
    sp = res["speed"]
    base_r = acc_r.get("paddle fp32", {}).get("recall1")
    base_d = acc_d.get("paddle fp32", {}).get("AP50")
    lines += ["## Trained demo models: accuracy and speed, against Paddle fp32", "",
              f"rec: models/demo/rec, {res['rec_images']} images of {res['rec_classes']} unseen classes; "
              f"det: models/demo/det, {res['det_images']} held-out scenes (240x320). Speed: model alone, "
              f"rec batch 32, det batch 1.", "",
              "| runtime | precision | rec img/s (bs32) | rec cosine mean / min | rec recall@1 | Δ recall@1 (pt) "
              "| det ms/img | det AP50 | Δ AP50 (pt) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for backend, precision in CONFIGS:
        key = f"{backend} {precision}"
        r, d = acc_r.get(key, {}), acc_d.get(key, {})
        rs, ds = sp["demo_rec"].get(key, {}), sp["demo_det"].get(key, {})
        rec_cells = ([f"fails: {r['error']}", "", ""] if "error" in r else
                     [f"{r['cos_mean']:.5f} / {r['cos_min']:.5f}", f"{r['recall1']:.4f}",
                      _f((r["recall1"] - base_r) * 100 if base_r is not None else None, "{:+.2f}")])
        det_cells = ([f"fails: {d['error']}", ""] if "error" in d else
                     [f"{d['AP50']:.4f}", _f((d["AP50"] - base_d) * 100 if base_d is not None else None,
                                             "{:+.2f}")])
        lines.append("| " + " | ".join([backend, precision, _f(rs.get("images_per_s")), *rec_cells,
                                        _f(ds.get("ms_per_image"), "{:.2f}"), *det_cells]) + " |")
    agree = res.get("system_agreement", {})
    lines += ["", f"predict_system on {res.get('system_scenes')} scenes of the unseen classes (each configuration's "
              f"own gallery of their gallery views; score_thres 0.75, detector 0.4): the share of Paddle fp32's "
              f"boxes answered with the same label at IoU >= 0.5.", "",
              "| runtime | precision | boxes agreeing with Paddle fp32 | disagreements on near ties | agreeing beyond "
              "near ties | F1 vs truth |", "|---|---|---|---|---|---|"]
    for backend, precision in CONFIGS:
        a = agree.get(f"{backend} {precision}", {})
        cells = ([f"fails: {a['error']}", "", "", ""] if "error" in a else
                 [f"{a['agreement']:.4f} ({a['agree']} of {a['boxes']})", str(a["near_ties"]),
                  f"{a['agreement_beyond_ties']:.4f}", f"{a['f1']:.4f}"] if a.get("agreement") is not None else
                 ["n/a", "", "", ""])
        lines.append(f"| {backend} | {precision} | " + " | ".join(cells) + " |")
    lines += ["", f"A near tie: Paddle fp32's top two labels within {NEAR_TIE} (cosine) of each other, or its score "
              f"within {NEAR_TIE} of score_thres: where fp32 itself is that undecided, the last digits of the "
              f"embedding decide. F1 against the scenes' truth shows what the changed answers cost."]
    lines += ["", "## Real-size models (random weights): legacy read directly vs PIR converted to IR", "",
              f"MobileNetV1@224 + FC 512 (PP-ShiTu's general rec shape), batch 32; PicoDet-LCNet x2.5 @640 "
              f"(PP-ShiTu's mainbody detector shape), batch 1. Paddle's own runs on the same files for "
              f"reference. GFLOP/s: {MOBILENETV1_GFLOP} GFLOP per MobileNetV1 image.", "",
              "| runtime | precision | model file | MobileNetV1 img/s | GFLOP/s | vs Paddle fp32 legacy | "
              "PicoDet x2.5 ms/img | vs Paddle fp32 PIR |",
              "|---|---|---|---|---|---|---|---|"]
    ref_r = sp["rec224"].get("paddle fp32 legacy", {}).get("images_per_s")
    ref_d = sp["det640"].get("paddle fp32 pir", {}).get("ms_per_image")
    for label in res["real_size_rows"]:
        backend, precision, fmt = label.split()
        r, d = sp["rec224"].get(label, {}), sp["det640"].get(label, {})
        rcell = f"fails: {r['error']}" if "error" in r else _f(r.get("images_per_s"))
        dcell = f"fails: {d['error']}" if "error" in d else _f(d.get("ms_per_image"))
        ips, ms = r.get("images_per_s"), d.get("ms_per_image")
        lines.append("| " + " | ".join([
            backend, precision, {"legacy": "legacy .pdmodel (direct)", "pir": "PIR .json" +
                                 (" (converted IR)" if backend == "openvino" else ""),
                                 "int8": "NNCF int8 IR"}[fmt],
            rcell, _f(ips * MOBILENETV1_GFLOP if ips else None, "{:.0f}"),
            _f(ips / ref_r if ips and ref_r else None, "{:.2f}x"), dcell,
            _f(ref_d / ms if ms and ref_d else None, "{:.2f}x")]) + " |")
    lines += ["", "Notes:", *notes(res)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(harness.BENCH / "results"))
    args = p.parse_args(argv)
    start = time.perf_counter()
    info = harness.machine_info()
    import bench_models
    import bench_data
    from ppshitu.infer import openvino_runtime  # registers the runtime; its bf16 default goes in the report

    rounds, reps = (2, 2) if args.quick else (5, 3)
    n_scenes = 30 if args.quick else 100
    res = {"threads": args.threads, "cpu": cpu_facts(), "speed": {},
           "bf16_f32_layers": openvino_runtime.BF16_F32_LAYERS}
    # demo models
    train_rows = [line.split()[0] for line in (REC_DATA / "train_list.txt").read_text().splitlines() if line.strip()]
    rec_int8 = quantized("demo_rec_int8", DEMO_REC, [str(REC_DATA / r) for r in train_rows], "rec")
    test_json, test_paths = scenes("val", 11, n_scenes)
    _, calib_paths = scenes("calib", 12, 100)
    det_int8 = quantized("demo_det_int8", DEMO_DET, calib_paths, "det", subset=100)
    print("accuracy: rec", flush=True)
    res["rec_accuracy"], res["rec_images"], res["rec_classes"] = rec_accuracy(args.threads, rec_int8)
    print("accuracy: det", flush=True)
    res["det_accuracy"] = det_accuracy(args.threads, det_int8, test_json, test_paths)
    res["det_images"] = len(test_paths)
    print("accuracy: predict_system labels", flush=True)
    # 300 scenes (~700 boxes): at 100, one box was 0.4 point of agreement
    res["system_agreement"], res["system_scenes"] = system_agreement(args.threads, rec_int8, det_int8,
                                                                     30 if args.quick else 300)
    print("speed: demo models", flush=True)
    paths, _, _ = rec_test_set()
    res["speed"]["demo_rec"] = speed(
        [(f"{b} {p}", model_dir(DEMO_REC, rec_int8, p), b, p) for b, p in CONFIGS], "rec", 32,
        rec_sample(DEMO_REC, paths[0]), args.threads, rounds, reps)
    res["speed"]["demo_det"] = speed(
        [(f"{b} {p}", model_dir(DEMO_DET, det_int8, p), b, p) for b, p in CONFIGS], "det", 1,
        det_sample(DEMO_DET, test_paths[0]), args.threads, rounds, reps)
    # real-size models
    print("speed: real-size models", flush=True)
    root, _, _ = bench_data.gallery_set(64)
    gallery_images = sorted(str(p) for p in root.rglob("*.jpg"))
    scene_paths = bench_data.scene_images(3, 20)
    m = bench_models.ensure_runtime_models({"rec": gallery_images, "det": scene_paths})
    rows = ["paddle fp32 legacy", "paddle fp32 pir", "paddle bf16 legacy", "paddle bf16 pir",
            "openvino fp32 legacy", "openvino fp32 pir", "openvino bf16-all legacy", "openvino bf16 legacy",
            "openvino bf16 pir", "openvino int8 int8"]
    res["real_size_rows"] = rows

    def specs(kind):
        out = []
        for label in rows:
            backend, precision, fmt = label.split()
            out.append((label, m[f"{kind}_{fmt}"], backend, precision))
        return out
    res["speed"]["rec224"] = speed(specs("rec"), "rec", 32, rec_sample(m["rec_legacy"], gallery_images[0]),
                                   args.threads, rounds, reps)
    res["speed"]["det640"] = speed(specs("det"), "det", 1, det_sample(m["det_pir"], scene_paths[0]),
                                   args.threads, max(2, rounds - 2), 2)
    elapsed = time.perf_counter() - start
    res["load_avg_at_end"] = os.getloadavg()
    res["packages"] = {d: harness._version(d) for d in ("paddlepaddle", "openvino", "nncf", "paddle2onnx", "onnx")}
    text = render(res, info, elapsed, args.quick)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_runtimes_quick" if args.quick else "bench_runtimes"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps({"machine": info, **res, "seconds": elapsed}, indent=1),
                                      encoding="utf-8")
    print(f"saved {out / (name + '.md')} and {name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
