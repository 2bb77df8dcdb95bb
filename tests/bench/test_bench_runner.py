"""The benchmark harness: ratios, the PP-ShiTu adapter, and one real side-by-side stage.

Timings are never asserted (they depend on the machine); what is asserted is that both
pipelines ran on the same inputs and produced comparable, saved results."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def test_speedup_direction_follows_the_unit():
    b = run_all.Bench(quick=True, threads=2)
    b.row("throughput", 300.0, 200.0, "img/s", higher_is_better=True)
    b.row("latency", 50.0, 100.0, "ms/img", higher_is_better=False)
    b.row("missing", None, 100.0, "ms/img", higher_is_better=False)
    assert [r["speedup"] for r in b.rows] == [1.5, 2.0, None]


def test_a_failing_stage_becomes_an_error_not_a_lost_run():
    b = run_all.Bench(quick=True, threads=1)
    assert b.stage("bogus", "no_such_stage", {}) is None
    assert b.raw["bogus"] is None
    assert len(b.errors) == 1 and "no_such_stage" in b.errors[0]


def test_reference_config_is_what_paddleclas_reads():
    import shitu_reference

    cfg = shitu_reference.shitu_config("/m/rec", "/m/det", threads=2, mkldnn=False, max_det_results=3)
    # PaddleClas reads these as attributes (args.use_fp16) and as keys
    assert cfg.Global.use_fp16 is False and cfg["Global"]["cpu_num_threads"] == 2
    assert cfg["Global"]["max_det_results"] == 3 and cfg["Global"]["threshold"] == 0.0
    assert cfg["Global"]["enable_mkldnn"] is False
    assert cfg["RecPreProcess"]["transform_ops"][1]["NormalizeImage"]["scale"] == pytest.approx(1 / 255, 1e-5)


@pytest.fixture(scope="module")
def det_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = run_all.main(["--quick", "--only", "det", "--out", str(out)])
    return rc, out


def test_quick_det_stage_runs_both_pipelines_side_by_side(det_run):
    rc, out = det_run
    result = json.loads((out / "quick.json").read_text())
    assert rc == 0, result["errors"]
    ours, ref = result["raw"]["det_ppshitu"], result["raw"]["det_pp-shitu"]
    # the same scenes, the same number of boxes: the comparison is like for like
    assert ours["images"] == ref["images"] > 0
    assert ours["boxes_per_image"] == ref["boxes_per_image"] == 5.0
    row = next(r for r in result["rows"] if r["row"].startswith("detector"))
    assert row["speedup"] == pytest.approx(ref["ms_per_image"] / ours["ms_per_image"])
    assert ours["peak_rss_mb"] > 50 and ref["peak_rss_mb"] > 50
    assert result["machine"]["cores"] >= 1 and result["machine"]["packages"]["paddleclas"] == "2.6.0"
    assert result["adaptations"], "what was adapted in PP-ShiTu must be saved with the results"


def test_quick_table_is_printed_and_saved(det_run):
    _, out = det_run
    text = (out / "quick.txt").read_text()
    assert "detector PicoDet-LCNet" in text and "speed-up" in text
    assert "PP-ShiTu adaptations" in text


def test_best_of_keeps_each_numbers_best_round():
    import harness

    runs = [{"images_per_s": {"bs1": 100.0, "bs8": 180.0}, "ms_per_image": 12.0, "seconds": 9.0,
             "peak_rss_mb": 900.0, "images": 20},
            {"images_per_s": {"bs1": 120.0, "bs8": 150.0}, "ms_per_image": 10.0, "seconds": 11.0,
             "peak_rss_mb": 950.0, "images": 20}]
    best = harness.best_of(runs)
    assert best["images_per_s"] == {"bs1": 120.0, "bs8": 180.0}  # rates: highest per batch size
    assert best["ms_per_image"] == 10.0 and best["seconds"] == 9.0  # times: lowest
    assert best["peak_rss_mb"] == 950.0 and best["images"] == 20    # memory: highest; counts: as run


def test_compare_alternates_rounds_and_keeps_a_round_that_worked(monkeypatch):
    b = run_all.Bench(quick=False, threads=1)
    order, results = [], {"a": [None, {"qps": 5.0}], "b": [{"qps": 3.0}, {"qps": 4.0}]}

    def fake_stage(key, name, args):
        order.append(key)
        result = results[key].pop(0)
        if result is None:
            b.errors.append(f"{key}: failed once")
        return result
    monkeypatch.setattr(b, "stage", fake_stage)
    got = b.compare([("a", "x", {}), ("b", "x", {})])
    assert order == ["a", "b", "a", "b"]  # alternating, not a-a then b-b
    assert got == {"a": {"qps": 5.0}, "b": {"qps": 4.0}} and b.errors == []


@pytest.mark.parametrize("vendor, family, flags, per_cycle", [
    ("GenuineIntel", 6, "fma avx2 avx512f", 64),     # Xeon: two 512-bit FMA pipes
    ("AuthenticAMD", 25, "fma avx2 avx512f", 32),    # Zen 4: AVX-512 as two 256-bit halves
    ("AuthenticAMD", 23, "fma avx2", 32),
    ("GenuineIntel", 6, "sse4_2", 8),
])
def test_fp32_peak_follows_the_cpu(vendor, family, flags, per_cycle):
    import harness

    got, ghz, how = harness.fp32_peak({"vendor_id": vendor, "cpu family": str(family), "flags": flags,
                                       "cpu MHz": "2100.000"})
    assert got == per_cycle and ghz == pytest.approx(2.1) and str(per_cycle) in how


def test_run_process_times_the_child_with_its_own_peak_rss():
    import harness

    held = bytearray(300 * 1024 * 1024)  # a forked child starts with these pages: ru_maxrss would count them
    held[::4096] = b"\1" * len(held[::4096])
    out = harness.run_process([sys.executable, "-c", "print('count=3')"])
    assert out["seconds"] > 0 and out["stdout_tail"].strip() == "count=3"
    assert 0 < out["peak_rss_mb"] < 200
    said = harness.run_process([sys.executable, "-c", "import sys; print('noise', file=sys.stderr); "
                                "print('precision fp32 for the rec model m: why', file=sys.stderr)"])
    assert said["precision_choices"] == ["precision fp32 for the rec model m: why"]     # auto's choice, kept
    with pytest.raises(harness.StageError, match="exit 3"):
        harness.run_process([sys.executable, "-c", "raise SystemExit(3)"])


def test_process_rows_time_both_sides_at_two_sizes_for_a_steady_state(monkeypatch, tmp_path):
    import bench_data

    (tmp_path / "list.txt").write_text("".join(f"a/{i}.jpg\tc{i}\n" for i in range(64)))
    monkeypatch.setattr(run_all, "runtime_models",
                        lambda m, checked=False: (_ for _ in ()).throw(ImportError("no openvino")))
    monkeypatch.setattr(bench_data, "gallery_set", lambda n: (tmp_path, tmp_path / "list.txt", n))
    monkeypatch.setattr(bench_data, "scene_images", lambda k, n: [str(tmp_path / f"s{i}.jpg") for i in range(n)])
    monkeypatch.setattr(run_all, "_warm_caches", lambda paths: None)
    seconds = {"proc_gallery_32_paddle_fp32": 3.0, "proc_gallery_64_paddle_fp32": 4.0,
               "proc_gallery_32_ref": 5.0, "proc_gallery_64_ref": 7.0, "proc_system_paddle_fp32": 6.0,
               "proc_system_ref": 9.0}
    b, cmds = run_all.Bench(quick=True, threads=2), {}

    def fake_process(key, cmd, check):
        cmds[key] = [str(c) for c in cmd]
        b.raw[key] = {"seconds": seconds[key], "peak_rss_mb": 100.0}
        return b.raw[key]
    monkeypatch.setattr(b, "process", fake_process)
    run_all.bench_process_rows(b, {"rec_legacy": "/m/rec", "det_pir": "/m/det"})
    assert list(cmds) == ["proc_gallery_32_ref", "proc_gallery_32_paddle_fp32", "proc_gallery_64_paddle_fp32",
                          "proc_gallery_64_ref", "proc_system_ref", "proc_system_paddle_fp32"]
    assert cmds["proc_gallery_64_paddle_fp32"][1].endswith("tools/build_gallery.py")
    assert "Global.inference_backend=paddle" in cmds["proc_gallery_64_paddle_fp32"]
    assert cmds["proc_system_ref"][1:3] == [str(BENCH / "shitu_reference.py"), "predict_system"]
    rows = {r["row"]: r for r in b.rows}
    steady = rows["process: gallery build steady state paddle fp32"]
    assert (steady["ppshitu"], steady["pp_shitu"], steady["speedup"]) == (32.0, 16.0, 2.0)  # 32 imgs / (t64 - t32)
    assert rows["process: predict_system 5 scenes paddle fp32"]["speedup"] == 1.5
    assert b.errors and "no openvino" in b.errors[0]


def test_process_rows_run_auto_on_the_fp32_dirs_and_say_what_it_chose(monkeypatch, tmp_path):
    # `openvino auto`: the fp32 model dirs with Global.precision=auto (the checked int8 copies sit beside them),
    # and the row's note quotes the choice each process printed
    import bench_data
    import bench_models
    import ppshitu.infer.openvino_runtime as ov_runtime

    (tmp_path / "list.txt").write_text("".join(f"a/{i}.jpg\tc{i}\n" for i in range(64)))
    models = {"rec_legacy": "/m/rec", "det_pir": "/m/det", "rec_int8": "/m/rec_i", "det_int8": "/m/det_i",
              "rec_checked": "/m/rec_int8", "det_checked": "/m/det_int8"}
    monkeypatch.setattr(run_all, "runtime_models", lambda m, checked=False: dict(models) if checked else None)
    monkeypatch.setattr(ov_runtime, "resolve_program", lambda d: None)
    monkeypatch.setattr(bench_models, "MODELS", "/m")
    monkeypatch.setattr(bench_data, "gallery_set", lambda n: (tmp_path, tmp_path / "list.txt", n))
    monkeypatch.setattr(bench_data, "scene_images", lambda k, n: [str(tmp_path / f"s{i}.jpg") for i in range(n)])
    monkeypatch.setattr(run_all, "_warm_caches", lambda paths: None)
    b, cmds = run_all.Bench(quick=True, threads=2), {}
    said = {"rec": "precision int8 for the rec model /m/rec_int8: /m/rec_int8 passed its agreement check",
            "det": "precision fp32 for the det model /m/det: no native bf16, and /m/det_int8 failed its check"}

    def fake_process(key, cmd, check):
        cmds[key] = [str(c) for c in cmd]
        auto = key.endswith("openvino_auto")
        b.raw[key] = {"seconds": 2.0 if "_32_" in key else 4.0, "peak_rss_mb": 100.0,
                      "precision_choices": ([said["rec"]] + ([said["det"]] if "system" in key else [])) if auto
                      else []}
        return b.raw[key]
    monkeypatch.setattr(b, "process", fake_process)
    run_all.bench_process_rows(b, {"rec_legacy": "/m/rec", "det_pir": "/m/det"})
    assert not b.errors
    auto = cmds["proc_system_openvino_auto"]
    assert "Global.precision=auto" in auto and "Global.rec_inference_model_dir=/m/rec" in auto
    assert "Global.det_inference_model_dir=/m/det" in auto
    assert "Global.precision=int8" in cmds["proc_system_openvino_int8"]
    assert "Global.rec_inference_model_dir=/m/rec_i" in cmds["proc_system_openvino_int8"]
    rows = {r["row"]: r for r in b.rows}
    note = rows["process: predict_system 5 scenes openvino auto (checked int8 copies beside fp32)"]["note"]
    assert "auto chose: precision int8 for the rec model rec_int8; precision fp32 for the det model det" in note
