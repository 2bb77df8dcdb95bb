"""Fault injection over every step of every gallery update: a writer SIGKILLed before ANY of
the file-system calls that append / new / remove / compact make leaves the gallery with its
old content (before CURRENT is replaced) or its new content (after), never anything else, and
the next writer completes; and (test_gallery_integrity.py) each damaged file is refused.

The writer is a child process stopped from outside the library: it wraps the calls the
update makes (makedirs, SQLite writes, copyfile, write_index, np.save, write_json, fsync,
rename, replace, rmtree), first runs once in counting mode to list them in order, then is
re-run once per call, announces when it reaches that call, and is killed there.
(SIGKILL loses no page cache: this tests the protocol's ordering, not power loss.)"""
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = r'''
import os, sys, time
import numpy as np

DIM = 16


def vectors(n, seed):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def make_base(index_dir):
    """200 vectors in 10 classes on HNSW, then one class removed: two versions, tombstones."""
    from ppshitu.gallery import Gallery
    g = Gallery.create(index_dir, DIM, index_method="HNSW32", model_fingerprint="m1", vectors=vectors(200, 0),
                       labels=[f"class {i % 10}" for i in range(200)], paths=[f"old/{i}.jpg" for i in range(200)])
    g.remove(labels=["class 9"])


def run_op(op, index_dir):
    from ppshitu.gallery import Gallery
    if op == "append":
        Gallery.open(index_dir).add(vectors(300, 7), ["new class"] * 300, [f"new/{i}.jpg" for i in range(300)],
                                    model_fingerprint="m1")
    elif op in ("new", "new_empty"):
        Gallery.create(index_dir, DIM, index_method="HNSW32", model_fingerprint="m2", overwrite=True,
                       vectors=vectors(120, 3), labels=[f"other {i % 4}" for i in range(120)])
    elif op == "remove":          # 20% of the index removed: tombstones only
        Gallery.open(index_dir).remove(labels=["class 0"])
    elif op == "remove_rebuild":  # 40%: past COMPACT_TOMBSTONE_RATIO, the index is rebuilt
        Gallery.open(index_dir).remove(labels=["class 0", "class 1", "class 2"])
    elif op == "compact":
        Gallery.open(index_dir).compact()
    else:
        raise ValueError(op)


def install(target, nth):
    import shutil
    import faiss
    from ppshitu.gallery import layout, store
    seq = []

    def pause_at(name, fn):
        def wrapped(*args, **kwargs):
            seq.append(name)
            if name == target and seq.count(name) == nth:
                print("PAUSED", name, nth, flush=True)
                time.sleep(3600)
            return fn(*args, **kwargs)
        return wrapped

    for owner, attr, name in ((os, "makedirs", "makedirs"), (store, "open_writable", "sqlite_open"),
                              (shutil, "copyfile", "copyfile"), (store, "insert_items", "insert_items"),
                              (store, "delete_items", "delete_items"), (store, "clear_tombstones", "clear_tombstones"),
                              (faiss, "write_index", "write_index"), (np, "save", "np_save"),
                              (layout, "write_json", "write_json"), (layout, "fsync_path", "fsync"),
                              (os, "rename", "rename"), (os, "replace", "replace"), (shutil, "rmtree", "rmtree")):
        setattr(owner, attr, pause_at(name, getattr(owner, attr)))
    return seq


if __name__ == "__main__":
    index_dir, op, target, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    seq = install(target, nth)
    run_op(op, index_dir)
    print("SEQ", " ".join(seq), flush=True)
'''
OPS = ["append", "new", "new_empty", "remove", "remove_rebuild", "compact"]


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    import runpy

    root = tmp_path_factory.mktemp("faults")
    script = root / "writer.py"
    script.write_text(CHILD)
    ns = runpy.run_path(str(script))  # the same make_base / run_op the child runs
    base = root / "base"
    ns["make_base"](str(base))
    return script, ns, base, root


def spawn(script, index_dir, op, target="none", nth=0):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(index_dir), op, target, str(nth)], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def snapshot(index_dir):
    """The gallery's content as a reader sees it, or None when there is no gallery."""
    from ppshitu.gallery import Gallery, GalleryError
    try:
        g = Gallery.open(index_dir)
    except GalleryError as e:
        assert "not a gallery" in str(e), e  # the only acceptable failure: no gallery yet
        return None
    with g:
        vec = np.asarray(g.vectors)
        _, _, ids = g.search(vec[::17], k=1)   # each probe's own vector is its nearest
        assert (ids[:, 0] == g.ids[::17]).all()
        return (g.model_fingerprint, len(g), tuple(g.ids.tolist()), vec.tobytes(),
                tuple((r["id"], r["label"], r["path"]) for r in g.records()), tuple(g.tombstones.tolist()))


def fresh(base, where, op):
    if op == "new_empty":
        return where
    shutil.copytree(base, where)
    return where


def kill_at(script, index_dir, op, target, nth):
    proc = spawn(script, index_dir, op, target, nth)
    try:
        line = proc.stdout.readline()
        if line.strip() != f"PAUSED {target} {nth}":
            proc.wait(timeout=60)
            return f"did not pause at {target} #{nth}: {line!r} {proc.stderr.read()[-1500:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"


@pytest.mark.parametrize("op", OPS)
def test_sigkill_before_every_call_of_an_update_leaves_old_or_new_content(child, op):
    from ppshitu.gallery import layout

    script, ns, base, root = child
    work = root / op
    work.mkdir()  # (so that makedirs of a gallery makes the same calls in every run)
    # the calls this update makes, in order (counting mode), and the content before / after it
    counted = fresh(base, work / "counted", op)
    proc = spawn(script, counted, op)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    seq = out.split("SEQ", 1)[1].split()
    commit = seq.index("replace")                   # os.replace(CURRENT): the one commit point
    assert seq.count("replace") == 1 and "fsync" in seq[:commit] and "rename" in seq[:commit]
    old, new = snapshot(fresh(base, work / "old", op)), snapshot(counted)
    assert new is not None and new != old

    cases = [(i, name, seq[:i + 1].count(name)) for i, name in enumerate(seq)]

    def one(case):
        i, name, nth = case
        index_dir = fresh(base, work / f"kill{i:02d}", op)
        problem = kill_at(script, index_dir, op, name, nth)
        if problem:
            return f"{name} #{nth}: {problem}"
        got = snapshot(index_dir)
        want = old if i <= commit else new          # paused BEFORE call i: replace itself not yet done
        if got != want:
            return f"killed before {name} #{nth} (call {i}): content is neither as expected " \
                   f"({'old' if i <= commit else 'new'}): {None if got is None else got[:2]}"
        ns["run_op"](op, str(index_dir))            # the lock died with the writer: the next one completes
        if snapshot(index_dir) != new:
            return f"killed before {name} #{nth}: the next {op} did not give the new content"
        versions = os.listdir(index_dir / "versions")
        if any(v.startswith(".tmp-") for v in versions) or len(versions) > 1 + layout.KEEP_OLD_VERSIONS:
            return f"killed before {name} #{nth}: debris left in versions/: {sorted(versions)}"
        if set(os.listdir(index_dir)) != {"CURRENT", "LOCK", "versions"}:
            return f"killed before {name} #{nth}: debris left in the gallery: {sorted(os.listdir(index_dir))}"
        return None

    with ThreadPoolExecutor(3) as pool:   # children mostly wait on their pipes: 3 keep 2 cores busy
        problems = [p for p in pool.map(one, cases) if p]
    assert not problems, f"{op}: {len(problems)} of {len(cases)} kill points failed:\n" + "\n".join(problems)
    assert len(cases) >= 12  # every file written, fsync'd, renamed, replaced, collected
