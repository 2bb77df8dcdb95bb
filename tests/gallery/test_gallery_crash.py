"""A writer killed with SIGKILL at any step of an append loses nothing: the gallery still
opens and answers exactly as before, and the next append completes.

The writer is stopped from outside the library: the child process wraps the file-system
calls the publish protocol makes (fsync, rename, replace) and the label insert, announces
when it reaches the chosen call, and waits there to be killed."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ppshitu.gallery import Gallery

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM = 16
APPEND = """
import os, sys, time, numpy as np
from ppshitu.gallery import Gallery, layout, store
target, nth, seen = sys.argv[2], int(sys.argv[3]), {{}}

def pause_at(name, fn):
    def wrapped(*args, **kwargs):
        seen[name] = seen.get(name, 0) + 1
        if name == target and seen[name] == nth:
            print("PAUSED", name, nth, flush=True)
            time.sleep(3600)
        return fn(*args, **kwargs)
    return wrapped

layout.fsync_path = pause_at("fsync", layout.fsync_path)
os.rename = pause_at("rename", os.rename)
os.replace = pause_at("replace", os.replace)
store.insert_items = pause_at("insert_items", store.insert_items)
g = Gallery.open(sys.argv[1])
v = np.random.default_rng(7).standard_normal((500, {dim})).astype(np.float32)
g.add(v, ["new class"] * 500, [f"new/{{i}}.jpg" for i in range(500)])
print("DONE", len(g), flush=True)
print("CALLS", " ".join(f"{{k}}={{v}}" for k, v in sorted(seen.items())), flush=True)
""".format(dim=DIM)


def run_append(index_dir, call="none", nth=0):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", APPEND, str(index_dir), call, str(nth)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# labels written, each file of the new version fsync'd, the version renamed into place, CURRENT replaced
# (the last fsync, of the index directory after CURRENT, is after the commit point)
STAGES = [("insert_items", 1), ("fsync", 1), ("fsync", 3), ("rename", 1), ("replace", 1)]


@pytest.mark.parametrize("call,nth", STAGES)
def test_sigkill_mid_append_leaves_the_gallery_as_it_was(tmp_path, call, nth):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, DIM)).astype(np.float32)
    labels = [f"class {i % 10}" for i in range(200)]
    Gallery.create(tmp_path / "g", DIM, index_method="HNSW32", vectors=vectors, labels=labels,
                   paths=[f"old/{i}.jpg" for i in range(200)])
    before = Gallery.open(tmp_path / "g")
    queries = vectors[::7]
    expected = before.search(queries, k=3)

    proc = run_append(tmp_path / "g", call, nth)
    try:
        line = proc.stdout.readline()             # the writer announces it reached the call
        assert line.strip() == f"PAUSED {call} {nth}", (line, proc.stderr.read() if proc.poll() is not None else "")
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
    assert out.splitlines()[0] == "DONE 700"
    final = Gallery.open(tmp_path / "g")
    assert len(final) == 700 and final.label_counts()["new class"] == 500
    # debris of the killed writer is gone: only the current version and the one before remain
    assert sorted(os.listdir(tmp_path / "g" / "versions")) == [before.version, final.version]
