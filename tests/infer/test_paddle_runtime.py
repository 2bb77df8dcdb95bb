"""The Paddle runtime (ppshitu/infer/paddle_runtime.py): repeated runs of a PIR program reuse the memory of
their freed activations instead of faulting fresh pages in on every run (keep_freed_buffers)."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# one 3x3 convolution whose output (4 x 32 x 320 x 320 float32: 52 MB) is over glibc's largest mmap
# threshold (32 MB), freed after the second convolution has read it
BIG_NET = textwrap.dedent("""
    import sys, paddle
    class Big(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = paddle.nn.Conv2D(3, 32, 3, padding=1)
            self.conv2 = paddle.nn.Conv2D(32, 4, 1)
        def forward(self, x):
            return self.conv2(paddle.nn.functional.relu(self.conv1(x)))
    paddle.seed(0)
    net = Big()
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 320, 320], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), sys.argv[1] + "/inference")
""")

# page faults of each of 8 runs after two warm-up runs, with or without keep_freed_buffers
MEASURE = textwrap.dedent("""
    import ctypes, resource, sys
    # no transparent huge pages (PR_SET_THP_DISABLE): with them one fault maps 2 MiB, and whether the kernel
    # gives them ('always' or 'madvise') differs by machine; the counts below are in 4 KiB pages
    ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)
    import numpy as np
    from ppshitu.infer import paddle_runtime
    if sys.argv[2] == "off":
        paddle_runtime.keep_freed_buffers = lambda: False
    rt = paddle_runtime.PaddleRuntime(sys.argv[1], cpu_threads=1)
    x = {"x": np.random.default_rng(0).standard_normal((4, 3, 320, 320)).astype(np.float32)}
    for _ in range(2):
        rt.run(x)
    faults = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        rt.run(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(*faults)
""")


@pytest.fixture(scope="module")
def big_pir(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    script = root / "big_net.py"  # to_static reads the source
    script.write_text(BIG_NET)
    out = root / "pir"
    out.mkdir()
    env = dict(os.environ, FLAGS_enable_pir_api="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return str(out)


def _faults_per_run(model_dir, mode):
    env = dict(os.environ, FLAGS_enable_pir_api="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", MEASURE, model_dir, mode], env=env, capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [int(f) for f in proc.stdout.strip().splitlines()[-1].split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_pir_runs_reuse_freed_activations_instead_of_faulting_pages_in(big_pir):
    pages = 4 * 32 * 320 * 320 * 4 / 4096  # the 52 MB activation, in 4 KiB pages
    off, on = _faults_per_run(big_pir, "off"), _faults_per_run(big_pir, "on")
    # the problem: the big buffer is faulted in again on every run; with the fix it is reused from the heap on
    # most runs (once in a while one run still maps afresh: seen 1 of 4 runs in one of several test runs)
    assert min(off) > 0.8 * pages, (off, on)
    assert sorted(on)[len(on) // 2] < 0.1 * pages and sum(on) < 0.5 * sum(off), (off, on)
