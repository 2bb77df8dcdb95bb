"""Global.precision auto (ppshitu/infer/precision.py) and the int8 agreement check (ppshitu/infer/quantize_check.py,
quantize_report.json): auto runs fp32 without a quantized model beside, the int8 one beside when its check passed,
fp32 (saying why) when it failed; bf16 first where native; explicit values as given; paddle unaffected. Every
test fixes what the CPU offers (kernel flags / bf16_support), so they hold on AVX2-only, AVX512-BF16 and AMX
machines alike."""
import json
import os

import numpy as np
import pytest

from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.infer import factory
from ppshitu.infer import openvino_runtime as ovr
from ppshitu.infer.precision import choose_precision, int8_beside
from ppshitu.schemas import INFER_SCHEMA
from tests.infer.test_openvino_runtime import _export, _images


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny fp32 rec model and, beside it (<dir>_int8), its int8 model written by the quantize command (tools/quantize.py's code)."""
    root = tmp_path_factory.mktemp("auto")
    fp32 = _export(str(root / "rec"), True)
    calib = root / "calib"
    calib.mkdir()
    import cv2

    for i, img in enumerate(_images(24, seed=5)):
        cv2.imwrite(str(calib / f"{i}.png"), img[:, :, ::-1])
    cfg = root / "infer.yaml"
    cfg.write_text(f"Global:\n  rec_inference_model_dir: {fp32}\n")
    from ppshitu.commands import quantize as tool  # what tools/quantize.py runs

    spec = tool.main(["-c", str(cfg), "--calib", str(calib), "--target", "0.5"])  # --out: <dir>_int8
    return {"fp32": fp32, "int8": int8_beside(fp32), "spec": spec, "cfg": str(cfg)}


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(ovr, "kernel_flags", lambda: {"avx2", "fma"})


def _cfg(path, *overrides):
    return load_config(path, list(overrides), INFER_SCHEMA)


def _report(int8_dir):
    with open(os.path.join(int8_dir, "quantize_report.json"), encoding="utf-8") as f:
        return json.load(f)


def test_the_quantize_tool_writes_a_report_with_the_agreement_and_the_f32_layers(models):
    report = _report(models["int8"])
    assert report["passed"] is True and 0.5 <= report["agreement"] <= 1.0
    assert report["plain"]["images"] == 24 and report["plain"]["counted"] == 24
    # the first convolution stays f32 (float_layers=1) and is named as such
    assert len(report["f32_layers"]) >= 1 and all(isinstance(n, str) for n in report["f32_layers"])
    assert report["quantized_from"] == models["spec"]["quantized_from"]
    cal = models["spec"]["calibration"]
    assert cal["passed"] is True and cal["float_layers"] == report["f32_layers"]
    assert report["plain"]["cosine_min"] >= 0.9  # a tiny random net; the demo models: bench_int8_agreement


def test_auto_runs_the_passing_int8_model_beside_where_bf16_is_not_native(models, no_bf16, capsys):
    rec = factory.rec_predictor(_cfg(models["cfg"], "Global.inference_backend=openvino"))
    assert rec.model_dir == models["int8"] and rec.runtime.precision == "int8"
    err = capsys.readouterr().err
    assert "precision int8 for the rec model" in err and "passed its agreement check" in err
    imgs = _images(8, seed=9)
    ref = factory.rec_predictor(_cfg(models["cfg"], "Global.precision=fp32")).predict(imgs)
    assert np.sum(ref * rec.predict(imgs), axis=1).min() >= 0.9


def test_auto_is_fp32_without_a_quantized_model_beside(models, tmp_path, no_bf16, capsys):
    import shutil

    fp32 = str(shutil.copytree(models["fp32"], tmp_path / "rec"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"Global:\n  rec_inference_model_dir: {fp32}\n  inference_backend: openvino\n")
    rec = factory.rec_predictor(_cfg(str(cfg)))
    assert rec.model_dir == fp32 and rec.runtime.precision == "fp32"
    assert "no quantized model beside it" in capsys.readouterr().err


def test_auto_refuses_an_int8_model_whose_check_failed(models, no_bf16, tmp_path):
    import shutil

    fp32 = shutil.copytree(models["fp32"], tmp_path / "rec")
    int8 = shutil.copytree(models["int8"], tmp_path / "rec_int8")
    report = _report(str(int8))
    report.update(passed=False, agreement=0.9, target=0.99)  # as a check that fell short writes it
    (int8 / "quantize_report.json").write_text(json.dumps(report))
    choice = choose_precision(str(fp32), "rec", "openvino", "auto")
    assert choice.precision == "fp32" and choice.model_dir == str(fp32)
    assert "failed its agreement check" in choice.reason and "0.9" in choice.reason
    os.remove(int8 / "quantize_report.json")  # an int8 model from before the check: not trusted either
    assert "no agreement check" in choose_precision(str(fp32), "rec", "openvino", "auto").reason


@pytest.mark.parametrize("flags, runs_int8", [({"avx2", "fma"}, False), ({"avx2", "fma", "avx512f", "avx512_vnni"},
                                                                           True)])
def test_a_model_quantized_without_the_overflow_fix_runs_int8_only_where_vnni_is(models, no_bf16, tmp_path,
                                                                                 monkeypatch, flags, runs_int8):
    """Without VNNI int8 sums saturate where the fix is off, so a check passed elsewhere does not hold there."""
    import shutil

    from ppshitu.utils import cpu

    assert _report(models["int8"])["settings"]["overflow_fix"] == "enable"  # what the quantize tool writes now
    fp32 = shutil.copytree(models["fp32"], tmp_path / "rec")
    int8 = shutil.copytree(models["int8"], tmp_path / "rec_int8")
    report = _report(str(int8))
    report["settings"]["overflow_fix"] = "first_layer_only"  # as quantizer version 4 wrote it
    (int8 / "quantize_report.json").write_text(json.dumps(report))
    monkeypatch.setattr(cpu, "kernel_flags", lambda: set(flags))
    choice = choose_precision(str(fp32), "rec", "openvino", "auto")
    assert choice.precision == ("int8" if runs_int8 else "fp32")
    if not runs_int8:
        assert "overflow fix" in choice.reason and "VNNI" in choice.reason


def test_auto_prefers_native_bf16_and_explicit_values_are_kept(models, monkeypatch):
    monkeypatch.setattr(ovr, "bf16_support", lambda: (True, "avx512_bf16; OpenVINO capabilities ['BF16']"))
    choice = choose_precision(models["fp32"], "rec", "openvino", "auto")
    assert (choice.precision, choice.model_dir) == ("bf16", models["fp32"]) and "natively" in choice.reason
    for asked in ("fp32", "bf16", "int8"):
        assert choose_precision(models["fp32"], "rec", "openvino", asked).precision == asked
    # paddle: auto is fp32 on the fp32 model, whatever sits beside it
    assert (choose_precision(models["fp32"], "rec", "paddle", "auto").model_dir,
            choose_precision(models["fp32"], "rec", "paddle", "auto").precision) == (models["fp32"], "fp32")
    rec = factory.rec_predictor(_cfg(models["cfg"], "Global.precision=fp32", "Global.inference_backend=openvino"))
    assert rec.model_dir == models["fp32"] and rec.runtime.precision == "fp32"


def test_explicit_values_keep_their_errors(models, no_bf16):
    with pytest.raises(ConfigError, match="avx512_bf16"):
        factory.rec_predictor(_cfg(models["cfg"], "Global.precision=bf16", "Global.inference_backend=openvino"))
    with pytest.raises(ConfigError, match="tools/quantize.py"):
        factory.rec_predictor(_cfg(models["cfg"], "Global.precision=int8", "Global.inference_backend=openvino"))
    with pytest.raises(ConfigError, match="Global.precision"):
        _cfg(models["cfg"], "Global.precision=int4")


def test_the_detector_check_counts_a_moved_box_and_an_extra_one():
    from ppshitu.infer.quantize_check import DetCheck

    def out(rows):  # PaddleDetection's [class, score, x1, y1, x2, y2] rows and bbox_num
        return [np.array(rows, np.float32).reshape(-1, 6), np.array([len(rows)], np.int32)]

    ref = out([[0, 0.9, 10, 10, 60, 60], [0, 0.8, 100, 100, 150, 160], [0, 0.31, 0, 0, 5, 5]])
    check = DetCheck([ref], threshold=0.3)
    assert check.item(0, ref) == (2, 2)  # the 0.31 box is within the margin of the threshold: not counted
    moved = out([[0, 0.9, 10, 10, 60, 60], [0, 0.8, 115, 100, 165, 160]])
    assert check.item(0, moved) == (1, 3)  # the moved box is lost, and int8's box there is one fp32 lacks
    extra = out([[0, 0.9, 10, 10, 60, 60], [0, 0.8, 100, 100, 150, 160], [0, 0.7, 200, 200, 230, 230]])
    assert check.item(0, extra) == (2, 3)


def test_the_rec_check_counts_a_changed_neighbour_and_a_moved_vector():
    from ppshitu.infer.quantize_check import RecCheck

    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 16))
    vecs = np.concatenate([base, base + 0.05 * rng.standard_normal((3, 16))])  # i and i + 3 are neighbours
    check = RecCheck([[v[None]] for v in vecs])
    assert check.decided.all()
    assert all(check.item(i, [vecs[i][None]]) == (1, 1) for i in range(6))
    assert check.item(0, [vecs[1][None]]) == (0, 1)  # now nearest to another image
    noisy = vecs[0] + 0.3 * np.linalg.norm(vecs[0]) * rng.standard_normal(16) / 4
    assert check.item(0, [noisy[None]]) == (0, 1)  # cosine below REC_MIN_COSINE


def test_the_accuracy_control_puts_back_the_worst_layers_until_the_target(models):
    """restore_until: 1, 2, 4 ... of the ranked layers back in float until the check reaches the target, and the
    ranking measures every heavy layer of a real int8 model (the tiny one)."""
    from ppshitu.infer.openvino import _ov
    from ppshitu.infer.quantize_control import layer_sensitivity, restore_until

    ranked = [("a", 0.3), ("b", 0.2), ("c", 0.1), ("d", 0.05), ("e", 0.01)]
    asked = []

    def quantize(names):
        asked.append(names)
        return names

    def score(names):  # the check reaches 0.99 once a, b and c are float
        return {"agreement": 0.99 if {"a", "b", "c"} <= set(names) else 0.9}

    model, result, restored, tried = restore_until(quantize, score, ranked, 0.99, base_names=["stem"])
    assert result["agreement"] == 0.99 and restored == ["a", "b", "c", "d"] and "stem" in model
    assert [k for k, _ in tried] == [1, 2, 4] and asked[0] == ["a", "stem"]
    _, result, restored, tried = restore_until(quantize, lambda n: {"agreement": 0.5}, ranked, 0.99)
    assert result["agreement"] == 0.5 and [k for k, _ in tried] == [1, 2, 4, 5]  # all tried, best kept

    ov = _ov()
    fp32 = ov.Core().read_model(os.path.join(models["fp32"], "inference.pdmodel"))
    int8 = ov.Core().read_model(os.path.join(models["int8"], "inference.xml"))
    heavy = [op.get_friendly_name() for op in fp32.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "MatMul")]
    from ppshitu.infer.preprocess import RecPreprocess
    from ppshitu.infer.spec import read_spec

    pre = RecPreprocess.from_spec(read_spec(models["fp32"]))
    name = fp32.inputs[0].get_any_name()
    ranked = layer_sensitivity(ov, fp32, int8, _images(4, seed=3), lambda im: {name: pre(im)[None]}, heavy)
    assert {n for n, _ in ranked} <= set(heavy) and len(ranked) >= 2
    assert all(np.isfinite(e) for _, e in ranked) and ranked == sorted(ranked, key=lambda t: -t[1])


def test_a_gallery_the_fp32_model_built_is_queried_in_fp32_under_auto(models, no_bf16, tmp_path, capsys):
    """auto would run the passing int8 model, but the gallery holds fp32's vectors: the system runs fp32 (and
    says why) rather than refusing the gallery; explicit int8 still refuses it."""
    from ppshitu.gallery.base import create_gallery
    from ppshitu.gallery.errors import GalleryError
    from ppshitu.gallery.model_id import model_fingerprint
    from ppshitu.system import RecognitionSystem

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"Global:\n  rec_inference_model_dir: {models['fp32']}\n  inference_backend: openvino\n"
                   f"  det_inference_model_dir: null\nIndexProcess:\n  index_dir: {tmp_path / 'index'}\n"
                   f"  index_method: Flat\n")
    fp32 = factory.rec_predictor(_cfg(str(cfg), "Global.precision=fp32"))
    imgs = _images(6, seed=11)
    create_gallery(_cfg(str(cfg))["IndexProcess"], fp32.embedding_size, model_fingerprint=model_fingerprint(fp32),
                   vectors=fp32.predict(imgs), labels=[f"c{i}" for i in range(6)], paths=[f"{i}.jpg" for i in range(6)])
    capsys.readouterr()
    system = RecognitionSystem.from_config(_cfg(str(cfg)))
    assert system.rec.model_dir == models["fp32"] and system.rec.runtime.precision == "fp32"
    assert "the gallery was built by this model" in capsys.readouterr().err
    assert system.predict(imgs[2])[0]["rec_docs"] == "c2"
    with pytest.raises(GalleryError, match="rebuild the gallery"):
        RecognitionSystem.from_config(_cfg(str(cfg), "Global.precision=int8",
                                           f"Global.rec_inference_model_dir={models['int8']}"))
