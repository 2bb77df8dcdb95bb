"""`make demo` and `make demo-models` in miniature: the demo script retrains both models with
the project's recipes (one short epoch each), exports them and runs the whole job on them."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Library noise the demo once printed (issue 22), each silenced where it starts: Paddle's import
# (OMP_NUM_THREADS, ccache: ppshitu/paddle_import.py), oneDNN's mean check (ppshitu/rec/pooling.py), the PIR
# `out` warning of every export (paddle_import.spend_pir_out_warning), gRPC's fork handlers (ppshitu/__init__.py)
NOISE = re.compile(r"OMP_NUM_THREADS|ccache|ReduceMeanCheckIfOneDNNSupport|fork_posix|grpc|"
                   r"not support input out tensor", re.IGNORECASE)


def test_demo_retrains_exports_and_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools/demo.py"), "--retrain", "--smoke", "--show", "2",
                           "--data", str(tmp_path / "data"), "--models", str(tmp_path / "models"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind in ("rec", "det"):
        assert (tmp_path / "models" / kind / "inference.yml").is_file()
        assert (tmp_path / "models" / kind / "inference.pdiparams").is_file()
    out = proc.stdout
    assert "gallery: 10 classes" in out and "after append: +7 classes" in out and "recall(appended cls)" in out
    assert "'added': 21" in out  # the 7 appended classes, 3 views each, without retraining
    assert len(list((tmp_path / "out" / "drawn_append").glob("*.jpg"))) == 2
    noise = [line for line in (proc.stdout + proc.stderr).splitlines() if NOISE.search(line)]
    assert not noise, noise
