"""The openvino runtime (ppshitu/infer/openvino_runtime.py) and int8 quantization (ppshitu/infer/quantize.py):
same outputs as Paddle Inference on a rec model (legacy read directly, PIR converted) and on the demo detector,
clear errors for bf16 without CPU support and int8 without a quantized model, a quantized tiny model that
keeps its embeddings and loads through RecPredictor."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


from ppshitu.errors import ConfigError  # noqa: E402
from ppshitu.infer import openvino_runtime as ovr  # noqa: E402
from ppshitu.infer.rec import RecPredictor  # noqa: E402
from ppshitu.infer.runtime import load_runtime  # noqa: E402
from ppshitu.infer.spec import read_spec, write_spec  # noqa: E402
from tests.detection_helpers import assert_same_detections  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_DET = os.path.join(ROOT, "models", "demo", "det")

TINY_NET = textwrap.dedent("""
    import sys, paddle
    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = paddle.nn.Conv2D(3, 16, 3, stride=2, padding=1)
            self.conv2 = paddle.nn.Conv2D(16, 32, 3, stride=2, padding=1)
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.fc = paddle.nn.Linear(32, 24)
        def forward(self, x):  # conv/relu/pool/linear: these trace in the legacy format too
            x = paddle.nn.functional.relu(self.conv1(x))
            x = paddle.nn.functional.relu(self.conv2(x))
            return self.fc(paddle.flatten(self.pool(x), 1))
    paddle.seed(0)
    net = Tiny()
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 32, 32], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), sys.argv[1] + "/inference")
""")
SPEC = dict(model_type="rec", input_size=[32, 32], interpolation="bilinear", scale=1 / 255.0,
            mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], embedding_size=24)


def _export(out_dir, legacy):
    os.makedirs(out_dir, exist_ok=True)
    script = os.path.join(os.path.dirname(out_dir), "tiny_net.py")  # to_static reads the source
    with open(script, "w") as f:
        f.write(TINY_NET)
    env = dict(os.environ, FLAGS_enable_pir_api="0" if legacy else "1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, script, out_dir], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    write_spec(out_dir, format="legacy" if legacy else "pir", **SPEC)
    return out_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ov_cache"))
    old = os.environ.get("PPSHITU_OPENVINO_CACHE")
    os.environ["PPSHITU_OPENVINO_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("PPSHITU_OPENVINO_CACHE", None)
    else:
        os.environ["PPSHITU_OPENVINO_CACHE"] = old


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("tiny")
    return {"pir": _export(str(root / "pir"), False), "legacy": _export(str(root / "legacy"), True)}


def _batch(n, seed=0, size=32):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # smooth random images: a blurred noise field, like photos more than noise is
        small = rng.integers(0, 256, (6, 6, 3)).astype(np.float32)
        out.append(np.clip(np.kron(small, np.ones((8, 8, 1))) + rng.normal(0, 8, (48, 48, 3)), 0, 255)
                   .astype(np.uint8))
    return out


def test_rec_matches_paddle_legacy_read_and_pir_conversion(tiny, cache):
    x = _batch(5)
    want = load_runtime(tiny["legacy"], "paddle", cpu_threads=1).run({"x": x})
    want = next(iter(want.values()))
    for fmt, source in (("legacy", "legacy"), ("pir", "converted")):
        rt = load_runtime(tiny[fmt], "openvino", cpu_threads=1)
        assert rt.source == source and rt.input_names == ["x"]
        got = rt.run({"x": x})[rt.output_names[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        # any batch size: the first shapes get models compiled for them, later ones the dynamic-batch model
        for n in (1, 3, 2, 5):
            np.testing.assert_allclose(rt.run({"x": x[:n]})[rt.output_names[0]], want[:n], rtol=1e-4, atol=1e-4)
        assert len(rt._static) == ovr.MAX_STATIC
    assert os.listdir(cache), "the PIR conversion is cached"
    assert not any(f.endswith(".xml") for f in os.listdir(tiny["pir"])), "model dirs are never written to"


def test_rec_predictor_openvino_embeddings_equal_paddle(tiny):
    imgs = _images(6)
    a = RecPredictor(tiny["pir"], cpu_threads=1).predict(imgs)
    b = RecPredictor(tiny["pir"], backend="openvino", cpu_threads=1).predict(imgs)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999


def test_write_ir_beside_the_export_is_loaded_without_converting(tiny, tmp_path):
    import shutil

    d = str(tmp_path / "with_ir")
    shutil.copytree(tiny["pir"], d)
    ovr.write_ir(d)
    assert read_spec(d)["openvino_model"] == "inference.xml"
    rt = load_runtime(d, "openvino", cpu_threads=1)
    assert rt.source == "ir"
    want = load_runtime(tiny["pir"], "paddle", cpu_threads=1).run({"x": _batch(3)})
    np.testing.assert_allclose(rt.run({"x": _batch(3)})[rt.output_names[0]], next(iter(want.values())),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not os.path.isfile(os.path.join(DEMO_DET, "inference.yml")), reason="no demo detector")
def test_demo_detector_matches_paddle(cache, monkeypatch):
    from dataset.synthetic import render_scene
    from ppshitu.infer.det import DetPredictor

    # the user cache (content-addressed: keyed by program, weights and converter versions), so the
    # committed model is converted once per machine, not once per test run
    monkeypatch.delenv("PPSHITU_OPENVINO_CACHE", raising=False)
    paddle_det = DetPredictor(DEMO_DET, threshold=0.2, cpu_threads=1)
    ov_det = DetPredictor(DEMO_DET, threshold=0.2, backend="openvino", cpu_threads=1)
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(3):
        img = render_scene(rng, (240, 320), list(range(40)), 3).image
        a, b = paddle_det.predict(img), ov_det.predict(img)
        assert_same_detections(a, b, score_thr=0.2)
        found += len(a)
    assert found > 0


def test_bf16_without_cpu_support_is_a_clear_error(tiny, monkeypatch):
    monkeypatch.setattr(ovr, "kernel_flags", lambda: {"avx2", "avx512f"})
    with pytest.raises(ConfigError, match="avx512_bf16"):
        load_runtime(tiny["legacy"], "openvino", cpu_threads=1, precision="bf16")


def test_bf16_is_refused_under_an_isa_cap_that_excludes_it(tiny, monkeypatch):
    # OpenVINO's CPU plugin honours ONEDNN_MAX_CPU_ISA too: with AVX2 it cannot compile bf16 kernels even on a
    # CPU with avx512_bf16, while its OPTIMIZATION_CAPABILITIES still list BF16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not ovr.bf16_support()[0] and "ONEDNN_MAX_CPU_ISA=AVX2" in ovr.bf16_support()[1]
    with pytest.raises(ConfigError, match="ONEDNN_MAX_CPU_ISA"):
        load_runtime(tiny["legacy"], "openvino", cpu_threads=1, precision="bf16")


def test_int8_without_a_quantized_model_is_a_clear_error(tiny):
    with pytest.raises(ConfigError, match="tools/quantize.py"):
        load_runtime(tiny["legacy"], "openvino", cpu_threads=1, precision="int8")
    with pytest.raises(ConfigError, match="int8"):
        load_runtime(tiny["legacy"], "paddle", cpu_threads=1, precision="int8")


def test_gpu_is_refused(tiny):
    with pytest.raises(ConfigError, match="CPU"):
        load_runtime(tiny["legacy"], "openvino", use_gpu=True)


def test_quantized_tiny_model_keeps_its_embeddings_and_loads_through_rec_predictor(tiny, tmp_path):
    from ppshitu.infer.quantize import quantize_model

    out = str(tmp_path / "int8")
    spec = quantize_model(tiny["legacy"], _images(48, seed=1), out, subset_size=48)
    assert spec["precision"] == "int8" and spec["format"] == "openvino"
    assert spec["quantized_from"] == read_spec(tiny["legacy"])["fingerprint"]
    assert sorted(os.listdir(out)) == ["inference.bin", "inference.xml", "inference.yml", "quantize_report.json"]
    q = RecPredictor(out, backend="openvino", precision="int8", cpu_threads=1)
    assert q.embedding_size == 24 and q.fingerprint == spec["fingerprint"]
    imgs = _images(16, seed=2)
    ref = RecPredictor(tiny["legacy"], cpu_threads=1).predict(imgs)
    cos = np.sum(ref * q.predict(imgs), axis=1)
    # a random 24-d tiny net is harder on int8 than a trained model (demo rec: see bench_runtimes.md)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, cos
    with pytest.raises(ConfigError, match="precision: int8"):
        RecPredictor(out, backend="openvino", precision="fp32", cpu_threads=1)
    with pytest.raises(ConfigError, match="openvino"):
        RecPredictor(out, backend="paddle", cpu_threads=1)


def test_quantize_tool_from_a_folder(tiny, tmp_path):
    import cv2

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(_images(12, seed=4)):
        cv2.imwrite(str(calib / f"{i}.jpg"), img[:, :, ::-1])
    (calib / "broken.jpg").write_bytes(b"not a jpeg")  # skipped with a warning
    cfg = tmp_path / "infer.yaml"
    cfg.write_text(f"Global:\n  rec_inference_model_dir: {tiny['pir']}\n")
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import quantize as tool
    finally:
        sys.path.pop(0)
    out = str(tmp_path / "int8")
    spec = tool.main(["-c", str(cfg), "--calib", str(calib), "--out", out])
    assert spec["calibration"]["images"] == 12
    with pytest.raises(ConfigError, match="already holds a model.*--overwrite"):
        tool.main(["-c", str(cfg), "--calib", str(calib), "--out", out])


def test_detector_export_writes_an_openvino_ir_that_matches_paddle(tmp_path):
    """export_detector(openvino_ir=True): inference.xml/.bin beside the PIR files, named in inference.yml,
    loaded without conversion, with the Paddle predictor's boxes."""
    import paddle

    from ppshitu.config import load_config
    from ppshitu.det.data import model_preprocess
    from ppshitu.det.export import export_detector
    from ppshitu.det.model import build_model
    from ppshitu.infer.det import DetPredictor
    from ppshitu.schemas import TRAIN_SCHEMA

    cfg = load_config(os.path.join(ROOT, "configs/det/picodet_demo.yaml"),
                      ["DataLoader.Eval.dataset.transform_ops.0.DetResize.target_size=[128, 128]"], TRAIN_SCHEMA)
    paddle.seed(0)
    model = build_model(cfg.Arch)
    rng = np.random.default_rng(0)
    for name, p in model.named_parameters():  # untrained heads score every box alike: spread the scores
        if name.endswith("bias"):
            p.set_value(rng.normal(0, 0.5, p.shape).astype("float32"))
    out = str(tmp_path / "det")
    spec = export_detector(model, out, model_preprocess(cfg), ["foreground"], openvino_ir=True)
    assert spec["openvino_model"] == "inference.xml" and os.path.isfile(os.path.join(out, "inference.bin"))
    ov_det = DetPredictor(out, threshold=0.0, max_det_results=100, backend="openvino", cpu_threads=1)
    assert ov_det.runtime.source == "ir"
    pd_det = DetPredictor(out, threshold=0.0, max_det_results=100, cpu_threads=1)
    img = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    chw, im_shape, scale_factor = pd_det.preprocess(img)
    ref, ref_num = pd_det.run(chw[None], im_shape[None], scale_factor[None])
    got, num = ov_det.run(chw[None], im_shape[None], scale_factor[None])
    assert ref_num.sum() >= 10 and num.sum() > 0
    # every box NMS keeps (its own score threshold 0.025, picodet_demo.yaml; when keep_top_k's 100 boxes are
    # full, the lowest kept score is the threshold), in [x1, y1, x2, y2, score] rows
    thr = max(0.025, ref[:, 1].min() if len(ref) >= 100 else 0.0)
    assert_same_detections(ref[:, [2, 3, 4, 5, 1]], got[:, [2, 3, 4, 5, 1]], score_thr=thr)


# ---------------------------------------------------------------- bf16 with the first layers in f32
def _runtime_precisions(rt, layer_type):
    """The runtime precision of each `layer_type` node the CPU plugin compiled, in execution order."""
    return [op.get_rt_info()["runtimePrecision"].astype(str)
            for op in rt.compiled.get_runtime_model().get_ordered_ops()
            if op.get_rt_info()["layerType"].astype(str) == layer_type]


def test_front_layers_counts_heavy_layers_on_the_longest_path():
    import openvino as ov
    from openvino import opset13 as ops

    def conv(x, c_in, c_out, name):
        w = ops.constant(np.ones((c_out, c_in, 3, 3), np.float32))
        y = ops.relu(ops.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1]))
        y.set_friendly_name(name)
        return y

    x = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    a = conv(x, 3, 4, "a")                          # 1 on every path
    b = conv(a, 4, 4, "b")                          # 2
    side = ops.relu(a)                              # 1: a branch that skips b
    side.set_friendly_name("side")
    joined = ops.add(b, side)                       # 2: the longest path in counts
    joined.set_friendly_name("joined")
    c = conv(joined, 4, 4, "c")                     # 3
    model = ov.Model([c], [x])

    def marked(n):
        return ovr.front_layers(model, n)
    assert {"a", "side"} <= marked(1) and not {"b", "joined", "c"} & marked(1)
    assert {"a", "side", "b", "joined"} <= marked(2) and "c" not in marked(2)
    assert "c" in marked(3)
    assert marked(0) == set()
    assert "image" not in marked(3)  # inputs are not layers to mark


@pytest.mark.skipif(not ovr.bf16_support()[0], reason="the CPU has no native bf16")
def test_bf16_runs_the_first_layers_in_f32(tiny):
    # the tiny net: conv1, conv2, fc; the CPU plugin shows each layer's precision in its runtime model. Which
    # layers the plugin itself leaves in f32 varies with the CPU (AMX, AVX512-BF16) and OpenVINO's version; what
    # ppshitu promises is that its first N heavy layers stay f32 and that bf16 is used where it is allowed.
    def convs(model_dir, **opts):
        rt = load_runtime(model_dir, "openvino", cpu_threads=1, precision="bf16", **opts)
        return rt, _runtime_precisions(rt, "Convolution")

    _, all_bf16 = convs(tiny["legacy"], bf16_f32_layers=0)
    assert len(all_bf16) == 2 and "bf16" in all_bf16, all_bf16
    _, first_f32 = convs(tiny["legacy"], bf16_f32_layers=1)
    assert len(first_f32) == 2 and first_f32[0] == "f32", first_f32
    default, precisions = convs(tiny["pir"])
    assert default.f32_layers == ovr.BF16_F32_LAYERS >= 2
    assert precisions == ["f32", "f32"]  # both within the default's first layers


@pytest.mark.skipif(not ovr.bf16_support()[0], reason="the CPU has no native bf16")
@pytest.mark.skipif(not os.path.isfile(os.path.join(DEMO_DET, "inference.yml")), reason="no demo detector")
def test_bf16_default_moves_the_demo_detectors_scores_less_than_bf16_everywhere(monkeypatch):
    from dataset.synthetic import render_scene
    from ppshitu.infer.det import DetPredictor

    monkeypatch.delenv("PPSHITU_OPENVINO_CACHE", raising=False)  # the user cache: converted once per machine
    dets = {name: DetPredictor(DEMO_DET, threshold=0.3, max_det_results=20, backend="openvino", cpu_threads=1,
                               **opts)
            for name, opts in {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"},
                               "bf16-all": {"precision": "bf16", "bf16_f32_layers": 0}}.items()}
    rng = np.random.default_rng(5)
    err = {"bf16": [], "bf16-all": []}
    for _ in range(12):
        img = render_scene(rng, (240, 320), list(range(40)), 3).image
        ref = dets["fp32"].predict(img)
        for name in err:
            got = dets[name].predict(img)
            for box in ref:  # each fp32 box against the nearest box of the other run
                j = np.argmin(np.abs(got[:, :4] - box[:4]).sum(1))
                err[name].append(abs(got[j, 4] - box[4]))
    assert len(err["bf16"]) > 20
    # measured on the 100 bench scenes: mean score error 0.0046 with every layer bf16, 0.0022 with the first 4 f32
    assert np.mean(err["bf16"]) < 0.75 * np.mean(err["bf16-all"]), {k: np.mean(v) for k, v in err.items()}


def test_bf16_f32_layers_is_refused_by_paddles_bf16(tiny):
    with pytest.raises(ConfigError, match="bf16_f32_layers"):
        load_runtime(tiny["legacy"], "paddle", cpu_threads=1, precision="bf16", bf16_f32_layers=2)
