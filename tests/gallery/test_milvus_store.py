"""The Milvus gallery store on Milvus Lite: what only Milvus has (what every store does is
tests/gallery/test_store_contract.py, run on this store too): ids that are path hashes, a revision token,
the Milvus index a method maps to, Milvus-specific input limits and locations, index methods the server does
not build, atomic `new` behind an alias, a SIGKILLed append and its rerun, a database another process holds,
the same top-1 as a FAISS Flat gallery, and two shard processes filling one collection at once through
Milvus Lite's server mode."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ppshitu.errors import ConfigError  # noqa: E402
from ppshitu.gallery import Gallery, GalleryError  # noqa: E402
from ppshitu.gallery import base  # noqa: E402
from ppshitu.gallery import milvus_store  # noqa: E402
from ppshitu.gallery.milvus_store import MilvusStore  # noqa: E402
from tests.gallery.gallery_helpers import DIM, class_vectors, paths_for, top1

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def db(tmp_path):
    """A fresh Milvus Lite file; every store opened on it is closed afterwards."""
    opened = []
    real_init = MilvusStore.__init__

    def tracking_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)
    MilvusStore.__init__ = tracking_init
    try:
        yield str(tmp_path / "gallery.db")
    finally:
        MilvusStore.__init__ = real_init
        for g in opened:
            g.close()


# ---------------------------------------------------------------- Milvus's side of the contract
def test_ids_are_path_hashes_so_a_path_added_again_gets_its_old_id(db):
    v, labels = class_vectors(4, 10, seed=6)
    paths = paths_for(labels, "s")
    g = MilvusStore.create(db, DIM, index_method="HNSW32", vectors=v, labels=labels, paths=paths)
    assert {r["path"]: r["id"] for r in g.records()} == {p: base.path_hash(p) for p in paths}
    _, _, before = g.search(v[10:20], k=1)
    assert before[:, 0].tolist() == [base.path_hash(p) for p in paths[10:20]]
    assert g.remove(paths=[paths[0]]).tolist() == [base.path_hash(paths[0])]
    g.remove(labels=["class 0"])
    g.compact()
    again = g.add(v[:1], ["class 0"], paths[:1])   # a path added again gets its old id (FAISS: a new one)
    assert again[0] == base.path_hash(paths[0])
    unpathed = g.add(v[:2], ["class 0"] * 2)       # no path: a random 63-bit id each
    assert (unpathed >= 0).all() and unpathed[0] != unpathed[1]


def test_a_revision_that_every_write_changes(db):
    """`version`: a token in its own collection property, read by open / refresh() (what the service's
    catalog caches by), new after each write by any store object, unchanged by a write that changes nothing."""
    v, labels = class_vectors(3, 5, seed=7)
    paths = paths_for(labels, "r")
    g = MilvusStore.create(db, DIM, index_method="HNSW32", ef_search=300, vectors=v, labels=labels, paths=paths)
    reader = MilvusStore.open(db).set_search_params(ef_search=64)
    seen = [reader.version]
    assert seen[0] == g.version and isinstance(seen[0], str)
    for write in (lambda: g.add(v[:1], ["new"], ["new.jpg"]), lambda: g.remove(labels=["new"]), g.compact):
        write()
        assert reader.version == seen[-1] and reader.refresh().version == g.version not in seen
        seen.append(reader.version)
    g.add(v[:1], ["new"], paths[:1])                              # all present: nothing written
    g.remove(labels=["nothing"])
    assert reader.refresh().version == seen[-1] and reader._search == {"ef": 64}  # refresh keeps its params


def test_each_method_maps_to_its_milvus_index_and_search_params(db):
    v, labels = class_vectors(2, 50, seed=9)
    MilvusStore.create(db, DIM, collection="h", index_method="HNSW32", ef_search=300, vectors=v, labels=labels)
    MilvusStore.create(db, DIM, collection="i", index_method="IVF", nprobe=2, nlist=3, vectors=v, labels=labels)
    h, i = MilvusStore.open(db, collection="h"), MilvusStore.open(f"{db}#i")
    assert h.meta["milvus_index"] == {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 40},
                                      "search_params": {"ef": 300}}
    assert i.meta["milvus_index"] == {"index_type": "IVF_FLAT", "params": {"nlist": 3},
                                      "search_params": {"nprobe": 2}}
    described = i._client.describe_index(i.physical, "vector")
    assert described["index_type"] == "IVF_FLAT" and described["params"] == {"nlist": 3}  # Lite got it
    default = MilvusStore.create(db, DIM, collection="d", index_method="IVF", vectors=v, labels=labels)
    assert default.meta["milvus_index"]["params"] == {"nlist": 2}   # FAISS's rule: >= 39 vectors per list
    empty = MilvusStore.create(db, DIM, collection="e", index_method="IVF")
    assert empty.meta["milvus_index"]["params"] == {"nlist": 128}   # created empty: Milvus fixes nlist now
    flat = MilvusStore.create(db, DIM, collection="f", index_method="FLAT", vectors=v, labels=labels)
    assert flat.meta["milvus_index"] == {"index_type": "FLAT", "params": {}, "search_params": {}}
    h.set_search_params(ef_search=64)
    assert h._search == {"ef": 64} and MilvusStore.open(db, collection="h")._search == {"ef": 300}
    assert h.method.milvus_search_params(h._search, 100) == {"ef": 100}  # Milvus refuses ef < limit
    assert top1(h, v[:5]) == labels[:5]


def test_milvus_limits_and_locations_are_clear_errors(db):
    v, labels = class_vectors(2, 5, seed=12)
    g = MilvusStore.create(db, DIM, model_fingerprint="aaaa", vectors=v, labels=labels)
    with pytest.raises(GalleryError, match="longer than 1024 bytes"):
        g.add(v[:1], ["x" * 1025])
    with pytest.raises(GalleryError, match="empty path"):
        g.add(v[:1], ["x"], [""])
    with pytest.raises(GalleryError, match="ids are not kept on Milvus"):
        MilvusStore.create(db, DIM, collection="ids", ids=[1])
    assert len(MilvusStore.open(db)) == 10
    with pytest.raises(GalleryError, match="no gallery there"):
        MilvusStore.open(db, collection="nowhere")
    with pytest.raises(GalleryError, match="no Milvus Lite database"):
        MilvusStore.open(os.path.dirname(db) + "/missing.db")
    with pytest.raises(ConfigError, match="neither a Milvus Lite file"):
        MilvusStore.open(os.path.dirname(db) + "/gallery_dir")
    with pytest.raises(ConfigError, match="not a valid Milvus collection name"):
        MilvusStore.open(db, collection="bad-name")
    with pytest.raises(ConfigError, match="names collection 'b'"):
        MilvusStore.open(f"{db}#b", collection="a")


def test_a_foreign_collection_is_not_read_as_a_gallery(db):
    g = MilvusStore.create(db, DIM, collection="ours")
    schema = g._client.create_schema(auto_id=False)
    schema.add_field("id", milvus_store.DataType.INT64, is_primary=True)
    schema.add_field("vector", milvus_store.DataType.FLOAT_VECTOR, dim=DIM)
    index = g._client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    g._client.create_collection("theirs", schema=schema, index_params=index)
    with pytest.raises(GalleryError, match="not a ppshitu gallery"):
        MilvusStore.open(db, collection="theirs")


# ---------------------------------------------------------------- Milvus only
def test_an_index_the_server_does_not_build_is_refused_naming_what_it_offers(db):
    v, labels = class_vectors(2, 50, seed=13)
    with pytest.raises(ConfigError, match=r"IVFPQ needs Milvus's IVF_PQ index, which milvus_lite-\S+ does not "
                                          r"build; it builds .*FLAT, HNSW.*IVF_FLAT.*\(index_method Flat, "
                                          r"HNSW32, IVF, IVFSQ8\)"):
        MilvusStore.create(db, DIM, index_method="IVFPQ", vectors=v, labels=labels)
    ip = {"backend": "milvus", "uri": db, "collection": "c", "index_method": "IVFPQ"}
    with pytest.raises(ConfigError, match="IVF_PQ"):
        base.check_creatable(ip, overwrite=True)                    # before anything is embedded
    g = MilvusStore._connect(db, None, must_exist=False)
    assert g._client.list_collections() == []                       # nothing was written
    g.close()


def test_new_is_published_atomically_and_the_old_collection_dropped(db):
    v, labels = class_vectors(3, 20, seed=14)
    old = MilvusStore.create(db, DIM, collection="shop", model_fingerprint="m1", vectors=v, labels=labels,
                             paths=paths_for(labels, "o"))
    reader = MilvusStore.open(db, collection="shop")
    first_physical = reader.physical
    # a `new` whose filling fails half way publishes nothing: the old gallery still answers
    bad = list(labels)
    bad[-1] = ""
    with pytest.raises(GalleryError, match="non-empty"):
        MilvusStore.create(db, DIM, collection="shop", model_fingerprint="m1", overwrite=True, vectors=v, labels=bad)
    assert MilvusStore.open(db, collection="shop").physical == first_physical and len(reader) == 60
    assert old._client.list_collections() == [first_physical]        # the failed build's collection is gone
    # a complete `new` moves the alias; an open reader follows it (same model)
    new = MilvusStore.create(db, DIM, collection="shop", model_fingerprint="m1", overwrite=True, vectors=v[:5],
                             labels=["renamed"] * 5, paths=paths_for(labels[:5], "n"))
    assert new.physical != first_physical and new._client.list_collections() == [new.physical]
    assert top1(reader, v[:1]) == ["renamed"] and reader.physical == new.physical
    # ...and refuses to follow a gallery of another model
    MilvusStore.create(db, DIM, collection="shop", model_fingerprint="m2", overwrite=True, vectors=v[:5],
                       labels=["other model"] * 5)
    with pytest.raises(GalleryError, match="built with model m2, not m1"):
        reader.search(v[:1])


def test_a_crashed_new_leaves_an_unpublished_collection_that_the_next_new_drops(db):
    v, labels = class_vectors(2, 10, seed=15)
    g = MilvusStore.create(db, DIM, collection="shop", vectors=v, labels=labels)
    orphan = "shop" + milvus_store.VERSION_SEP + "20000101000000dead00"  # what a `new` killed mid-fill leaves
    g._create_physical(orphan, dict(g.meta))
    g._client.insert(orphan, [{"id": 1, "vector": v[0], "label": "half", "path": "", "box": "", "added_at": ""}])
    assert top1(MilvusStore.open(db, collection="shop"), v[:1]) == [labels[0]]  # not published: not seen
    MilvusStore.create(db, DIM, collection="shop", overwrite=True, vectors=v, labels=labels)
    assert orphan not in g._client.list_collections() and len(g._client.list_collections()) == 1


CRASH_CHILD = r'''
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from ppshitu.gallery import milvus_store
from ppshitu.gallery.milvus_store import MilvusStore

milvus_store.INSERT_BATCH = 50
db, mode, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
v = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
g = MilvusStore.open(db)
real = g._client.insert
calls = []

def insert(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(1)
    print("DONE", len(calls), flush=True)
    if mode == "slow":
        time.sleep(0.5)
    return out

g._client.insert = insert
print("START", flush=True)
g.add(v, [f"class {i % 7}" for i in range(n)], [f"img/{i}.jpg" for i in range(n)], model_fingerprint="m1")
print("FINISHED", flush=True)
'''


def _run_until(db, mode, n, stop_after_line=None, delay=None):
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, ROOT, db, mode, str(n)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in child.stdout:
        if line.strip() == "START" and delay is not None:
            time.sleep(delay)
            break
        if line.strip() == stop_after_line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    return child


@pytest.mark.parametrize("kill", ["between batches", "at a random moment"])
def test_a_sigkilled_append_leaves_whole_batches_and_a_rerun_completes_it(db, kill):
    total = 600 if kill == "between batches" else 8000
    v = np.random.default_rng(0).standard_normal((total, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels, paths = [f"class {i % 7}" for i in range(total)], [f"img/{i}.jpg" for i in range(total)]
    MilvusStore.create(db, 16, index_method="HNSW32", model_fingerprint="m1").close()  # the child opens it next
    # "between batches": killed while it sleeps after its 4th insert call; "at a random moment": killed
    # once it reports its 7th (then, rerun, its 23rd) call while it goes on flat out: the signal lands
    # in a later insert call or between two
    rounds = [("slow", "DONE 4", None)] if kill == "between batches" else [("fast", "DONE 7", None),
                                                                           ("fast", "DONE 23", None)]
    g = None
    for mode, line, delay in rounds:
        _run_until(db, mode, total, line, delay)
        # what the crash left: whole batches (one insert call each), every stored row complete
        g = MilvusStore.open(db, model_fingerprint="m1")
        n = len(g)
        assert n % 50 == 0 and n < total, n
        if kill == "between batches":
            assert 200 <= n < 600
        recs = g.records()
        assert len({r["path"] for r in recs}) == n
        for r in recs:
            i = int(r["path"][4:-4])
            assert r["label"] == labels[i] and r["id"] == base.path_hash(paths[i])
        if recs:
            _, scores, ids = g.search(v[[int(r["path"][4:-4]) for r in recs[:20]]], k=1)
            assert np.allclose(scores[:, 0], 1.0, atol=1e-5)  # the stored vectors are the ones sent
        g.close()  # (the next child opens the file)
    # the rerun: the same append again sends only what is missing
    g = MilvusStore.open(db, model_fingerprint="m1")
    sent = []
    real = g._client.insert
    g._client.insert = lambda *a, **kw: (sent.append(len(kw["data"])), real(*a, **kw))[1]
    before = len(g)
    ids = g.add(v, labels, paths, model_fingerprint="m1")
    assert sum(sent) == total - before == int((ids >= 0).sum())
    assert len(g) == total and g.existing_paths(paths) == set(paths)
    recs = g.records()
    assert len(recs) == total and len({r["id"] for r in recs}) == total   # no duplicates
    assert top1(g, v[:50]) == labels[:50]


def test_a_lite_database_another_process_holds_is_refused_with_the_server_hint(db):
    MilvusStore.create(db, DIM).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from ppshitu.gallery.milvus_store import MilvusStore;"
                               "g = MilvusStore.open(sys.argv[2]); print('OPEN', flush=True); time.sleep(60)",
                               ROOT, db], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "OPEN"
        with pytest.raises(GalleryError, match=r"another process has this Milvus Lite database open.*"
                                               r"milvus-lite server --data-dir"):
            MilvusStore.open(db)
    finally:
        holder.kill()
        holder.wait(30)
    assert len(MilvusStore.open(db)) == 0                            # free again once it exits


def test_the_token_comes_from_the_environment_never_the_config(monkeypatch):
    seen = {}

    class FakeClient:
        def __init__(self, uri, token=""):
            seen.update(uri=uri, token=token)

    monkeypatch.setattr(milvus_store, "MilvusClient", FakeClient)
    monkeypatch.setenv(milvus_store.TOKEN_ENV, "root:secret")
    milvus_store.connect("http://milvus.example:19530")
    assert seen == {"uri": "http://milvus.example:19530", "token": "root:secret"}
    monkeypatch.delenv(milvus_store.TOKEN_ENV)
    milvus_store.connect("http://milvus.example:19530")
    assert seen["token"] == ""
    assert milvus_store.split_location("http://h:19530#shop") == ("http://h:19530", "shop")
    assert milvus_store.split_location("g.db")[1] == milvus_store.DEFAULT_COLLECTION


def near_queries(base_vectors, nq, seed, noise=1.33):
    """Weak matches (cosine ~0.6 to their source at 512-d; stronger at lower dims), as bench_search.py."""
    rng = np.random.default_rng(seed)
    src = base_vectors[rng.integers(0, len(base_vectors), nq)]
    d = base_vectors.shape[1]
    q = src + noise * rng.standard_normal(src.shape).astype(np.float32) / np.sqrt(d)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["HNSW32", "IVF"])
def test_same_top1_labels_as_a_faiss_flat_gallery_from_the_same_vectors(db, tmp_path, method):
    """HNSW32 (the default): >= 99 % the same top-1 label as exact search. IVF probes a fifth of its
    lists, in FAISS as here; it must agree with exact search at least as often as FAISS's IVF gallery
    does with the same nlist / nprobe (measured: FAISS 0.88, Milvus Lite 0.96: its growing segment
    is searched exactly)."""
    rng = np.random.default_rng(17)
    n, d = 10000, 128
    v = rng.standard_normal((n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = [f"item {i // 2}" for i in range(n)]                  # two images per item
    paths = [f"items/{i}.jpg" for i in range(n)]
    flat = Gallery.create(tmp_path / "flat", d, index_method="Flat", vectors=v, labels=labels, paths=paths)
    mil = MilvusStore.create(db, d, index_method=method, vectors=v[:6000], labels=labels[:6000], paths=paths[:6000])
    mil.add(v[6000:], labels[6000:], paths[6000:])                  # indexed segments + the growing one
    q = near_queries(v, 1000, seed=18)
    ours, theirs = top1(mil, q), top1(flat, q)
    agreement = np.mean([a == b for a, b in zip(ours, theirs)])
    if method == "HNSW32":
        assert agreement >= 0.99, agreement
    else:
        faiss_ivf = Gallery.create(tmp_path / "ivf", d, index_method="IVF", vectors=v[:6000], labels=labels[:6000])
        faiss_ivf.add(v[6000:], labels[6000:])
        assert faiss_ivf.index.nlist == mil.meta["milvus_index"]["params"]["nlist"]
        # the same nprobe (the FAISS gallery's own is tuned on its vectors: search_tuning.py)
        faiss_ivf.set_search_params(nprobe=mil.meta["milvus_index"]["search_params"]["nprobe"])
        faiss_agreement = np.mean([a == b for a, b in zip(top1(faiss_ivf, q), theirs)])
        assert agreement >= faiss_agreement - 0.01, (agreement, faiss_agreement)
    _, s_m, _ = mil.search(q[:50], k=1)
    _, s_f, _ = flat.search(q[:50], k=1)
    same = np.array(ours[:50]) == np.array(theirs[:50])
    assert np.allclose(s_m[same, 0], s_f[same, 0], atol=1e-5)      # the same cosine for the same match


# ---------------------------------------------------------------- sharded builds
SHARD_CHILD = r'''
import os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from ppshitu.gallery import base

uri, shard, go = sys.argv[2], base.parse_shard(sys.argv[3]), sys.argv[4]
entries = [(f"class_{i % 23}/{i:04d}.jpg", f"class {i % 23}") for i in range(600)]
mine = [(p, lab) for p, lab in entries if base.in_shard(p, shard)]   # what `build_gallery --shard I/N` embeds

def embed(path):  # a deterministic stand-in for the model: the same vector for a path in any process
    rng = np.random.default_rng(base.path_hash(path) % 2 ** 32)
    return rng.standard_normal(24).astype(np.float32)

while not os.path.exists(go):
    time.sleep(0.01)
ip = {"backend": "milvus", "uri": uri, "collection": "shop", "index_method": "HNSW32", "dist_type": "IP"}
g = base.open_or_create_gallery(ip, 24, model_fingerprint="m1")   # both shards start at once: one creates
added = 0
for s in range(0, len(mine), 40):                                    # batches interleave with the other shard
    chunk = mine[s:s + 40]
    ids = g.add(np.stack([embed(p) for p, _ in chunk]), [lab for _, lab in chunk], [p for p, _ in chunk],
                model_fingerprint="m1")
    added += int((ids >= 0).sum())
print("ADDED", added, len(mine), flush=True)
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lite_server(tmp_path):
    """Milvus Lite's server mode (`milvus-lite server`): one process serving the file to several clients."""
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "milvus-lite")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "milvus_lite"]
    server = subprocess.Popen(cmd + ["server", "--data-dir", str(tmp_path / "served.db"), "--host", "127.0.0.1",
                                     "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert server.poll() is None, "milvus-lite server exited"
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def test_two_shards_at_once_fill_one_collection_like_a_single_build(lite_server, tmp_path):
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", SHARD_CHILD, ROOT, lite_server, f"{i}/2", str(go)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}) for i in range(2)]
    time.sleep(1.0)  # both imported and waiting
    go.write_text("go")
    outs = [c.communicate(timeout=300) for c in children]
    assert all(c.returncode == 0 for c in children), [o[1][-2000:] for o in outs]
    counts = [tuple(int(x) for x in o[0].split()[1:3]) for o in outs]
    assert all(added == share for added, share in counts) and sum(s for _, s in counts) == 600
    assert min(s for _, s in counts) > 200                             # the hash splits evenly enough

    entries = [(f"class_{i % 23}/{i:04d}.jpg", f"class {i % 23}") for i in range(600)]

    def embed(path):
        return np.random.default_rng(base.path_hash(path) % 2 ** 32).standard_normal(24).astype(np.float32)

    vectors = np.stack([embed(p) for p, _ in entries])
    single = MilvusStore.create(lite_server, 24, collection="single", model_fingerprint="m1", vectors=vectors,
                                labels=[lab for _, lab in entries], paths=[p for p, _ in entries])
    sharded = MilvusStore.open(lite_server, collection="shop", model_fingerprint="m1", embedding_size=24)
    try:
        assert len(sharded) == len(single) == 600
        union = {(r["path"], r["label"], r["id"]) for r in sharded.records()}
        assert union == {(r["path"], r["label"], r["id"]) for r in single.records()}
        got = {int(i): vec for ids, vecs, _ in sharded.iter_items() for i, vec in zip(ids, vecs)}
        want = {int(i): vec for ids, vecs, _ in single.iter_items() for i, vec in zip(ids, vecs)}
        assert got.keys() == want.keys() and all(np.allclose(got[i], want[i]) for i in want)
        q = near_queries(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), 200, seed=19, noise=0.5)
        assert top1(sharded, q) == top1(single, q)
    finally:
        single.close()
        sharded.close()


# ---------------------------------------------------------------- through the builder
def test_build_gallery_on_milvus_answers_like_faiss_flat(tmp_path):
    """build_gallery (new, append, remove) with IndexProcess.backend milvus, against a FAISS Flat build
    of the same images with the same stand-in model."""
    from ppshitu.gallery import builder
    from tests.gallery.test_build_gallery import PixelEmbedder, config
    from dataset.synthetic import make_recognition_set

    root = tmp_path / "rec"
    make_recognition_set(root, num_classes=9, views_per_class=4, image_size=32, num_train_classes=3,
                         gallery_views=3, seed=0)
    rows = [line.split("\t") for line in (root / "gallery_list.txt").read_text().splitlines()]
    (root / "half.txt").write_text("".join(f"{p}\t{lab}\n" for p, lab in rows[: len(rows) // 2]))
    (root / "all.txt").write_text("".join(f"{p}\t{lab}\n" for p, lab in rows))
    rec = PixelEmbedder()
    milvus = {"backend": "milvus", "uri": str(tmp_path / "g.db"), "collection": "shop", "index_method": "HNSW32"}
    builder.build_gallery(config(root, tmp_path / "flat", index_method="Flat"), rec=rec)
    builder.build_gallery(config(root, tmp_path / "unused", data_file=root / "half.txt", **milvus), rec=rec)
    summary = builder.build_gallery(config(root, tmp_path / "unused", index_operation="append", **milvus), rec=rec)
    assert summary["added"] == len(rows) - len(rows) // 2 and summary["already_present"] == len(rows) // 2
    flat = Gallery.open(tmp_path / "flat")
    mil = base.open_gallery({**milvus}, model_fingerprint=rec.fingerprint, embedding_size=rec.embedding_size)
    queries = [line.split("\t")[0] for line in (root / "query_list.txt").read_text().splitlines()]
    from ppshitu.utils.image import read_image
    q = np.concatenate([rec.predict_batch(rec.preprocess(read_image(root / p))[None]) for p in queries])
    agreement = np.mean([a == b for a, b in zip(top1(mil, q), top1(flat, q))])
    assert agreement >= 0.99, agreement
    (root / "one_label.txt").write_text(rows[0][1] + "\n")
    builder.build_gallery(config(root, tmp_path / "unused", index_operation="remove", remove_by="label",
                                 data_file=root / "one_label.txt", **milvus), rec=rec)
    assert rows[0][1] not in base.open_gallery(milvus).labels()
    mil.close()


def test_build_gallery_shards_union_equals_a_single_build(tmp_path):
    """build_gallery(..., shard="I/N"): each shard embeds only its paths, the first creates the collection;
    shards 0/2 and 1/2 (here one after the other in one process; at once in separate processes above)
    give the same items as one unsharded build."""
    from ppshitu.gallery import builder
    from tests.gallery.test_build_gallery import PixelEmbedder, config
    from dataset.synthetic import make_recognition_set

    root = tmp_path / "rec"
    make_recognition_set(root, num_classes=9, views_per_class=4, image_size=32, num_train_classes=3,
                         gallery_views=3, seed=0)
    (root / "all.txt").write_text((root / "gallery_list.txt").read_text())
    rec = PixelEmbedder()
    db = str(tmp_path / "g.db")
    sharded = {"backend": "milvus", "uri": db, "collection": "sharded", "index_operation": "append"}
    with pytest.raises(ConfigError, match="needs IndexProcess.index_operation: append"):
        builder.build_gallery(config(root, tmp_path / "x", backend="milvus", uri=db), rec=rec, shard="0/2")
    parts = [builder.build_gallery(config(root, tmp_path / "x", **sharded), rec=rec, shard=f"{i}/2") for i in range(2)]
    builder.build_gallery(config(root, tmp_path / "x", backend="milvus", uri=db, collection="single"), rec=rec)
    a = base.open_gallery({"backend": "milvus", "uri": db, "collection": "sharded"})
    b = base.open_gallery({"backend": "milvus", "uri": db, "collection": "single"})
    assert sum(p["added"] for p in parts) == len(b) == len(a) and all(p["added"] for p in parts)
    assert {(r["path"], r["label"]) for r in a.records()} == {(r["path"], r["label"]) for r in b.records()}
    a.close()
    b.close()
