"""A writer killed with SIGKILL in the middle of an append loses nothing: the gallery
still opens and answers exactly as before, and the next append completes."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ppshitu.gallery import Gallery
from ppshitu.gallery.layout import TEST_PAUSE_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM = 16
APPEND = """
import sys, numpy as np
from ppshitu.gallery import Gallery
g = Gallery.open(sys.argv[1])
v = np.random.default_rng(7).standard_normal((500, {dim})).astype(np.float32)
g.add(v, ["new class"] * 500, [f"new/{{i}}.jpg" for i in range(500)])
print("DONE", len(g), flush=True)
""".format(dim=DIM)


def run_append(index_dir, pause_at=None):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    env.pop(TEST_PAUSE_ENV, None)
    if pause_at:
        env[TEST_PAUSE_ENV] = pause_at
    return subprocess.Popen([sys.executable, "-c", APPEND, str(index_dir)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("stage", ["mid_write", "before_rename", "before_current"])
def test_sigkill_mid_append_leaves_the_gallery_as_it_was(tmp_path, stage):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, DIM)).astype(np.float32)
    labels = [f"class {i % 10}" for i in range(200)]
    Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", vectors=vectors, labels=labels,
                   paths=[f"old/{i}.jpg" for i in range(200)])
    before = Gallery.open(tmp_path / "g")
    queries = vectors[::7]
    expected = before.search(queries, k=3)

    proc = run_append(tmp_path / "g", pause_at=stage)
    try:
        line = proc.stdout.readline()             # the writer announces it reached the stage
        assert line.strip() == f"PAUSED {stage}", (line, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    after = Gallery.open(tmp_path / "g")
    assert after.version == before.version and len(after) == 200
    got = after.search(queries, k=3)
    assert got[0] == expected[0] and np.array_equal(got[2], expected[2]) and np.allclose(got[1], expected[1])
    assert "new class" not in after.labels()

    proc = run_append(tmp_path / "g")             # the lock died with the writer: the next one runs
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "DONE 700"
    final = Gallery.open(tmp_path / "g")
    assert len(final) == 700 and final.label_counts()["new class"] == 500
    # debris of the killed writer is gone: only the current version and the one before remain
    assert sorted(os.listdir(tmp_path / "g" / "versions")) == [before.version, final.version]
