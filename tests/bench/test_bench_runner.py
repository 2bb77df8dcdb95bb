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
