"""What the benchmarks and the demo say in words follows this run's numbers (fabricated here), never a past run's.

bench_decode's interpretation, bench_runtimes' notes and bench_service's setup line are computed from the run;
the demo's table holds only this run's phases, and an earlier version's figures come on a line labelled so."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_decode  # noqa: E402
import bench_runtimes  # noqa: E402
import bench_service  # noqa: E402


def decode_row(size, decoded, speedups, recall=(0.98, 0.98), mAP=(0.95, 0.95), cosine=0.99):
    return {"size": size, "source": f"{size}x{size}",
            "decoded_at": {"demo 160": decoded[0], "general 224": decoded[1]},
            "demo 160": {"speedup": speedups[0]}, "general 224": {"speedup": speedups[1]},
            "accuracy": {"full": {"recall1": recall[0], "mAP": mAP[0]},
                         "reduced": {"recall1": recall[1], "mAP": mAP[1]}, "cosine_mean": cosine}}


def test_decode_prose_says_faster_only_where_this_run_was_faster():
    fast = bench_decode.interpretation([decode_row(448, ("224x224", "224x224"), (2.3, 1.6), cosine=0.99),
                                        decode_row(896, ("224x224", "224x224"), (1.8, 1.4), cosine=0.97)])
    text = " ".join(fast)
    assert "1.40x-2.30x" in text and "4 of 4 rows at least 5 % faster" in text and "slower" not in text
    assert "fell as the JPEG grew" in text and "no size lost more than 1 point" in text

    slow = " ".join(bench_decode.interpretation([decode_row(448, ("224x224", "448x448"), (0.8, 1.0),
                                                           recall=(0.98, 0.95), cosine=0.97),
                                                decode_row(896, ("224x224", "224x224"), (1.0, 1.0), cosine=0.99)]))
    assert "0 of 3 rows at least 5 % faster" in slow and "slower: 448x448 demo 160 0.80x" in slow
    assert "decoded at full size" in slow and "448x448 general 224" in slow
    assert "fell as the JPEG grew" not in slow  # the cosine rose with the size in this run
    assert "lost up to 3.00 points" in slow


def runtime_res(agree_kept, agree_all, ap=(0.90, 0.89, 0.85)):
    return {"cpu": {"bf16": "avx512_bf16"}, "bf16_f32_layers": 4,
            "system_agreement": {"openvino bf16": {"agreement": agree_kept},
                                 "openvino bf16-all": {"agreement": agree_all}},
            "det_accuracy": {"paddle fp32": {"AP50": ap[0]}, "openvino bf16": {"AP50": ap[1]},
                             "openvino bf16-all": {"AP50": ap[2]}}}


def test_runtime_notes_follow_the_measured_agreement():
    better = "\n".join(bench_runtimes.notes(runtime_res(0.99, 0.95)))
    assert "raised the agreement from 95.0% (bf16-all) to 99.0%" in better
    assert "bf16 -1.00 points, bf16-all -5.00" in better
    worse = "\n".join(bench_runtimes.notes(runtime_res(0.95, 0.99)))
    assert "bf16-all agreed more (99.0%)" in worse and "raised" not in worse
    same = "\n".join(bench_runtimes.notes(runtime_res(0.97, 0.97)))
    assert "changed nothing measurable" in same
    missing = "\n".join(bench_runtimes.notes({"cpu": {"bf16": "none"}, "bf16_f32_layers": 4}))
    assert "This run" not in missing and "2.4x" not in missing  # no figure from another run


def test_service_setup_line_reports_the_drawn_mix_and_the_settings():
    load = {"latency": {"predict": [0.1] * 50, "search": [0.1] * 30, "append": [0.1] * 19},
            "errors": [{"op": "append", "status": 500, "body": ""}]}
    text = bench_service.setup_text("test machine", 3, 16, load)
    assert "3 inference workers, queue 16" in text and "plus 19 image(s) appended" in text
    assert "50% POST /predict" in text and "(target 60%)" in text and "30% POST /search" in text
    assert "20% POST /api/items" in text  # 19 answered + 1 error of 100 drawn


def test_demo_table_has_only_this_runs_phases(capsys):
    spec = importlib.util.spec_from_file_location("demo_tool", ROOT / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    m = {"precision": 0.5, "recall": 0.25, "f1": 0.333, "unknown_rejection": 1.0}
    demo.print_table([("gallery: 10 classes", 10, m, 0.0), ("after append: +7 classes", 17, m, 0.5)])
    out = capsys.readouterr().out.strip().splitlines()
    header, rows, reference = out[0], out[1:3], out[3:]
    assert header.startswith("phase (this run)") and len(out) == 4
    assert [r.split()[0] for r in rows] == ["gallery:", "after"]
    assert reference[0].startswith("for reference, measured earlier (not this run):")
    assert "from-scratch" not in "\n".join(rows)
