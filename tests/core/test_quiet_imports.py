"""What importing the libraries does to a process (issue 22): each check in a fresh interpreter, since it is
about what a process prints and loads from its start.

- `import paddle` after `import ppshitu`: no OMP_NUM_THREADS warning, no ccache warning, Paddle's OpenMP on all
  cores (or on OMP_NUM_THREADS where set), and the variable left as it was (ppshitu/paddle_import.py);
- a config that names the FAISS backend never imports pymilvus or gRPC (~1 s);
- a fork of a process that has used gRPC logs nothing (GRPC_ENABLE_FORK_SUPPORT, ppshitu/__init__.py).
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OMP_THREADS = """
import ctypes, os, sys
import ppshitu
import paddle
iomp = ctypes.CDLL(os.path.join(paddle.__path__[0], "libs", "libiomp5.so"), mode=os.RTLD_NOLOAD)
print(iomp.omp_get_max_threads(), os.environ.get("OMP_NUM_THREADS"))
"""


def run(code, env=None, **kwargs):
    env = {k: v for k, v in (env or os.environ).items()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300, **kwargs)


@pytest.mark.parametrize("omp", [None, "1", "3"])
def test_paddle_import_is_quiet_and_on_the_chosen_threads(omp):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    proc = run(OMP_THREADS, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    threads, left = proc.stdout.split()
    assert int(threads) == (int(omp) if omp else os.cpu_count())  # Paddle alone: 1 when unset
    assert left == str(omp)  # as the user left it, not Paddle's "1"
    assert "WISELY" not in proc.stderr and "OMP_NUM_THREADS" not in proc.stderr, proc.stderr
    assert "ccache" not in proc.stderr, proc.stderr


def test_a_faiss_config_never_imports_pymilvus(tmp_path):
    code = f"""
import sys
import numpy as np
from ppshitu.config import load_config
from ppshitu.gallery.base import create_gallery, open_gallery
from ppshitu.schemas import INFER_SCHEMA
cfg = load_config("configs/inference/inference_general.yaml",
                  ["IndexProcess.backend=faiss", "IndexProcess.index_method=Flat",
                   "IndexProcess.index_dir={tmp_path / 'g'}"], INFER_SCHEMA)
vectors = np.eye(4, 8, dtype="float32")
create_gallery(cfg.IndexProcess, 8, vectors=vectors, labels=list("abcd")).close()
print(open_gallery(cfg.IndexProcess).search(vectors[:1], k=1)[0])
print(sorted(m for m in ("pymilvus", "grpc", "milvus_lite") if m in sys.modules))
"""
    proc = run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[['a']]", "[]"], proc.stdout


GRPC_FORK = """
import os
import ppshitu
import grpc
channel = grpc.insecure_channel("127.0.0.1:9")  # nothing listens: its threads keep trying
try:
    grpc.channel_ready_future(channel).result(timeout=0.2)
except grpc.FutureTimeoutError:
    pass
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
channel.close()
"""


def test_forking_after_grpc_logs_nothing():
    pytest.importorskip("grpc")  # installed with pymilvus, the milvus backend's client
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    proc = run(GRPC_FORK, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fork" not in proc.stderr, proc.stderr  # was: fork_posix.cc ... skipping fork() handlers
