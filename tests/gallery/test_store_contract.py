"""The gallery-store contract (ppshitu/gallery/interface.py's GalleryStore): every case runs on every store,
the FAISS gallery (a directory) and the Milvus store on Milvus Lite (a .db file), through the interface only.
Open-set append, remove by label / path, re-append without duplicates, stable ids, stored fields, vectors read
back by id, search parameters, IP / L2 scores, empty slots, model checks and bad input, and the
IndexProcess-level helpers of gallery/base.py. What only one store has stays in its own file
(test_gallery.py, test_milvus_store.py). A new store joins by a Backend below."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ppshitu.errors import ConfigError
from ppshitu.gallery import base
from ppshitu.gallery.errors import GalleryError
from tests.gallery.gallery_helpers import DIM, class_vectors, paths_for, top1

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FaissBackend:
    name = "faiss"
    methods = ("Flat", "HNSW32", "IVF", "IVFPQ")

    def __init__(self, tmp_path, monkeypatch):
        from ppshitu.gallery.gallery import Gallery
        self.cls, self.root = Gallery, tmp_path

    def create(self, dim, name="g", **kwargs):
        return self.cls.create(self.root / name, dim, **kwargs)

    def open(self, name="g", **kwargs):
        return self.cls.open(self.root / name, **kwargs)

    def index_process(self, name="g", **keys):
        return {"backend": "faiss", "index_dir": str(self.root / name), **keys}

    def index_dir(self, name="g"):
        return str(self.root / name)

    def close(self):
        pass


class MilvusBackend:
    """Milvus Lite: one .db file, one collection per gallery name; every store opened is closed after the test."""
    name = "milvus"
    methods = ("Flat", "HNSW32", "IVF")  # what Milvus Lite builds (IVFPQ: test_milvus_store.py, refused)

    def __init__(self, tmp_path, monkeypatch):
        from ppshitu.gallery.milvus_store import MilvusStore
        self.cls, self.db, self.opened = MilvusStore, str(tmp_path / "gallery.db"), []
        real_init = MilvusStore.__init__

        def tracking_init(store, *args, **kwargs):
            real_init(store, *args, **kwargs)
            self.opened.append(store)
        monkeypatch.setattr(MilvusStore, "__init__", tracking_init)

    def create(self, dim, name="g", **kwargs):
        return self.cls.create(self.db, dim, collection=name, **kwargs)

    def open(self, name="g", **kwargs):
        return self.cls.open(self.db, collection=name, **kwargs)

    def index_process(self, name="g", **keys):
        return {"backend": "milvus", "uri": self.db, "collection": name, **keys}

    def index_dir(self, name="g"):
        return f"{self.db}#{name}"

    def close(self):
        for g in self.opened:
            g.close()


BACKENDS = {"faiss": FaissBackend, "milvus": MilvusBackend}


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path, monkeypatch):
    backend = BACKENDS[request.param](tmp_path, monkeypatch)
    yield backend
    backend.close()


@pytest.fixture(params=[(b, m) for b in sorted(BACKENDS) for m in BACKENDS[b].methods],
                ids=lambda p: f"{p[0]}-{p[1]}")
def store_method(request, tmp_path, monkeypatch):
    backend = BACKENDS[request.param[0]](tmp_path, monkeypatch)
    yield backend, request.param[1]
    backend.close()


def _ids_by_path(gallery):
    return {r["path"]: r["id"] for r in gallery.records()}


def test_append_recognises_new_classes_without_retraining(store_method):
    store, method = store_method
    old_v, old_l = class_vectors(6, 40, seed=1)
    g = store.create(DIM, index_method=method, vectors=old_v, labels=old_l, paths=paths_for(old_l, "a"))
    new_v, new_l = class_vectors(4, 40, seed=2, first=6)
    query_v, query_l = class_vectors(4, 5, seed=3, first=6)  # unseen samples of the new classes
    assert not set(top1(g, query_v)) & set(query_l)           # not recognisable before the append
    ids = g.add(new_v, new_l, paths_for(new_l, "b"))
    assert (ids >= 0).all() and len(set(ids.tolist())) == len(ids)
    for gal in (g, store.open()):
        assert len(gal) == 400
        assert gal.labels() == sorted(set(old_l + new_l))
        hits = np.mean([p == t for p, t in zip(top1(gal, query_v), query_l)])
        assert hits >= 0.95, (store.name, method, hits)


def test_remove_by_label_and_path_on_every_index_type(store_method):
    store, method = store_method
    v, labels = class_vectors(5, 40, seed=4)
    paths = paths_for(labels, "x")
    g = store.create(DIM, index_method=method, vectors=v, labels=labels, paths=paths)
    first_id = _ids_by_path(g)[paths[0]]
    removed = g.remove(labels=["class 2"])
    assert len(removed) == 40 and len(g) == 160
    one = g.remove(paths=[paths[0], "not/there.jpg"])            # one image of class 0; an unknown path
    assert one.tolist() == [first_id]
    assert len(g.remove(labels=[], paths=[])) == 0               # empty lists remove nothing
    with pytest.raises(GalleryError, match="remove needs labels or paths"):
        g.remove()
    for gal in (g, store.open()):
        found, _, ids = gal.search(v, k=10)
        flat = [lab for row in found for lab in row]
        assert "class 2" not in flat and "class 2" not in gal.labels()
        assert first_id not in ids                                # the removed image is gone too
        assert set(removed.tolist()).isdisjoint(ids.ravel().tolist())
        assert len(gal) == 159
    assert g.compact() == 159
    found, _, _ = g.search(v[80:120], k=5)                       # the removed class's own vectors as queries
    assert all(lab != "class 2" for row in found for lab in row)


def test_rerun_append_adds_nothing_twice(store):
    v, labels = class_vectors(3, 10, seed=5)
    paths = paths_for(labels, "p")
    g = store.create(DIM, vectors=v[:20], labels=labels[:20], paths=paths[:20])
    ids = g.add(v, labels, paths)                    # 20 already there, 10 new
    assert (ids[:20] == -1).all() and (ids[20:] >= 0).all()
    again = g.add(v, labels, paths)
    assert (again == -1).all() and len(g) == 30
    assert g.existing_paths(paths + ["other.jpg"]) == set(paths)
    twice = g.add(v[:1], labels[:1], ["new.jpg"])
    dup_in_call = g.add(v[:2], labels[:2], ["dup.jpg", "dup.jpg"])
    assert twice[0] >= 0 and dup_in_call[0] >= 0 and dup_in_call[1] == -1 and len(g) == 32
    no_path = g.add(v[:2], labels[:2])               # without paths nothing dedups
    assert (no_path >= 0).all() and len(g) == 34


def test_ids_are_stable_across_remove_and_compact(store):
    v, labels = class_vectors(4, 10, seed=6)
    g = store.create(DIM, index_method="HNSW32", vectors=v, labels=labels, paths=paths_for(labels, "s"))
    ids = _ids_by_path(g)
    _, _, before = g.search(v[10:20], k=1)
    g.remove(labels=["class 0"])
    g.compact()
    _, _, after = g.search(v[10:20], k=1)
    assert (before == after).all()
    kept = {p: i for p, i in ids.items() if not p.startswith("class 0/")}
    assert _ids_by_path(store.open()) == kept                  # every kept item keeps its id


def test_labels_paths_and_boxes_are_stored_with_the_vectors(store):
    v, _ = class_vectors(2, 3, seed=6)
    boxes = [[1.0, 2.0, 30.5, 40.0], None, [0, 0, 5, 5], None, None, [3, 4, 5, 6]]
    paths = ["a/1.jpg", "a/2.jpg", "ünïcode/ä b.jpg", 'quote"d.jpg', "back\\slash.jpg", "b/6.jpg"]
    labels = ["class 0", "with 'quotes' \"and\" spaces", "类别", "class 1", "class 1", "class 1"]
    g = store.create(DIM, index_method="Flat", vectors=v, labels=labels, paths=paths, boxes=boxes)
    recs = {r["path"]: r for r in store.open().records()}
    for p, lab, b in zip(paths, labels, boxes):
        assert recs[p]["label"] == lab
        assert recs[p]["box"] == (None if b is None else [float(x) for x in b])
    assert g.label_counts() == {"class 0": 1, "with 'quotes' \"and\" spaces": 1, "类别": 1, "class 1": 3}
    assert len(g.remove(labels=["with 'quotes' \"and\" spaces", "类别"])) == 2
    assert len(g.remove(paths=['quote"d.jpg', "back\\slash.jpg"])) == 2 and len(g) == 2
    only = g.records(ids=[recs["b/6.jpg"]["id"]])
    assert [r["path"] for r in only] == ["b/6.jpg"]


def test_vectors_read_back_by_id_in_the_order_asked(store):
    v, labels = class_vectors(3, 5, seed=7)
    paths = paths_for(labels, "r")
    g = store.create(DIM, index_method="HNSW32", vectors=v, labels=labels, paths=paths)
    by_path = _ids_by_path(g)
    order = [14, 0, 7, 0]
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.allclose(g.get_vectors([by_path[paths[i]] for i in order]), unit[order], atol=1e-6)
    assert g.get_vectors([]).shape == (0, DIM)
    g.remove(labels=["class 0"])
    gone = by_path[paths[3]]
    with pytest.raises(GalleryError, match=f"no gallery item {gone}"):
        g.get_vectors([by_path[paths[14]], gone])
    with pytest.raises(GalleryError, match="no gallery item 99"):
        store.create(DIM, name="empty").get_vectors([99])


def test_every_item_is_read_back_in_batches(store):
    v, labels = class_vectors(3, 5, seed=8)
    paths = paths_for(labels, "b")
    g = store.create(DIM, index_method="Flat", vectors=v, labels=labels, paths=paths, boxes=[[0, 0, 1, 1]] * 15)
    batches = list(g.iter_items(batch_size=4))
    assert sorted(len(ids) for ids, _, _ in batches) == [3, 4, 4, 4]
    ids = np.concatenate([ids for ids, _, _ in batches])
    vectors = np.concatenate([vecs for _, vecs, _ in batches])
    records = [r for _, _, recs in batches for r in recs]
    assert [r["id"] for r in records] == ids.tolist() and sorted(ids.tolist()) == [r["id"] for r in g.records()]
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    rows = [paths.index(r["path"]) for r in records]
    assert np.allclose(vectors, unit[rows], atol=1e-6) and vectors.dtype == np.float32
    assert [r["label"] for r in records] == [labels[i] for i in rows] and records[0]["box"] == [0.0, 0.0, 1.0, 1.0]
    assert list(store.create(DIM, name="empty").iter_items()) == []


def test_search_params_are_configurable_and_persisted(store):
    v, labels = class_vectors(2, 50, seed=9)
    store.create(DIM, name="h", index_method="HNSW32", ef_search=300, vectors=v, labels=labels)
    store.create(DIM, name="i", index_method="IVF", nprobe=2, nlist=3, vectors=v, labels=labels)
    h, i = store.open("h"), store.open("i")
    assert h.manifest["index_params"]["ef_search"] == 300
    assert (i.manifest["index_params"]["nlist"], i.manifest["index_params"]["nprobe"]) == (3, 2)
    assert h.set_search_params(ef_search=64) is h and top1(h, v[:5]) == labels[:5]
    assert store.open("h").manifest["index_params"]["ef_search"] == 300   # per object, not persisted
    with pytest.raises(GalleryError, match="nprobe does not apply to a HNSW32 index"):
        h.set_search_params(nprobe=3)
    with pytest.raises(GalleryError, match="ef_search must be >= 1"):
        h.set_search_params(ef_search=0)
    with pytest.raises(ConfigError, match="efsearch"):
        store.create(DIM, name="x", index_method="HNSW32", efsearch=3)
    with pytest.raises(ConfigError, match="HNSW32"):
        store.create(DIM, name="y", index_method="HNSW")


def test_l2_scores_are_squared_distances_and_ip_scores_are_cosines(store):
    v, labels = class_vectors(3, 10, seed=10)
    paths = paths_for(labels, "d")
    ip = store.create(DIM, name="ip", dist_type="IP", index_method="Flat", vectors=v, labels=labels, paths=paths)
    l2 = store.create(DIM, name="l2", dist_type="L2", index_method="Flat", vectors=v, labels=labels, paths=paths)
    _, s_ip, i_ip = ip.search(v[:3] * 7.0, k=4)      # scale does not change a cosine
    _, s_l2, i_l2 = l2.search(v[:3], k=4)
    assert ip.higher_is_better and not l2.higher_is_better
    assert np.allclose(s_ip[:, 0], 1.0, atol=1e-5) and (np.diff(s_ip, axis=1) <= 1e-6).all()
    assert np.allclose(s_l2[:, 0], 0.0, atol=1e-4) and (np.diff(s_l2, axis=1) >= -1e-6).all()
    row_ip = {i: paths.index(p) for p, i in _ids_by_path(ip).items()}
    row_l2 = {i: paths.index(p) for p, i in _ids_by_path(l2).items()}
    assert [row_ip[int(i)] for i in i_ip[:, 0]] == [0, 1, 2] == [row_l2[int(i)] for i in i_l2[:, 0]]
    expected = ((v[row_l2[int(i_l2[0, 1])]] - v[0]) ** 2).sum()          # squared, as score_thres assumes
    assert s_l2[0, 1] == pytest.approx(expected, rel=1e-4)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert s_ip[0, 1] == pytest.approx(float(unit[row_ip[int(i_ip[0, 1])]] @ unit[0]), abs=1e-5)


def test_more_k_than_items_pads_with_empty_slots(store):
    v, labels = class_vectors(1, 3, seed=11)
    g = store.create(DIM, index_method="Flat", vectors=v, labels=labels)
    found, scores, ids = g.search(v[0], k=5)
    assert ids[0, 3:].tolist() == [-1, -1] and found[0][3:] == [None, None] and np.isneginf(scores[0, 4])
    empty = store.create(DIM, name="empty")
    found, _, ids = empty.search(v[:2], k=2)
    assert found == [[None, None], [None, None]] and (ids == -1).all() and len(empty) == 0
    with pytest.raises(GalleryError, match="k must be >= 1"):
        g.search(v[:1], k=0)


def test_model_mismatch_and_bad_input_are_clear_errors(store):
    v, labels = class_vectors(2, 5, seed=12)
    store.create(DIM, model_fingerprint="aaaa", vectors=v, labels=labels)
    with pytest.raises(GalleryError, match="built with model aaaa, not bbbb"):
        store.open(model_fingerprint="bbbb")
    with pytest.raises(GalleryError, match="holds 32-d vectors but the model makes 64-d"):
        store.open(embedding_size=64)
    g = store.open(model_fingerprint="aaaa", embedding_size=DIM)
    with pytest.raises(GalleryError, match=r"expected shape \[n, 32\].*\[2, 16\]"):
        g.search(np.zeros((2, 16), np.float32))
    with pytest.raises(GalleryError, match="built with model aaaa"):
        g.add(v[:1], ["x"], model_fingerprint="cccc")
    with pytest.raises(GalleryError, match="2 vectors but 1 labels"):
        g.add(v[:2], ["x"])
    with pytest.raises(GalleryError, match="non-empty strings"):
        g.add(v[:1], [""])
    with pytest.raises(GalleryError, match=r"a box is \[x1, y1, x2, y2\]"):
        g.add(v[:1], ["x"], boxes=[[1, 2, 3]])
    with pytest.raises(GalleryError, match="NaN"):
        g.search(np.full(DIM, np.nan))
    assert len(store.open()) == 10                  # failed updates changed nothing
    with pytest.raises(GalleryError, match="already exists"):
        store.create(DIM)
    with pytest.raises(GalleryError):
        store.open("nowhere")
    empty = store.create(DIM, name="fresh")         # the first add sets the fingerprint
    empty.add(v[:1], ["x"], ["p.jpg"], model_fingerprint="dddd")
    assert store.open("fresh").model_fingerprint == "dddd"


def test_the_index_process_helpers_reach_the_store(store):
    """gallery/base.py: where an IndexProcess section says, through the store's own location_of / exists /
    check_creatable (no per-store branch there)."""
    v, labels = class_vectors(3, 10, seed=16)
    ip = store.index_process("shop", dist_type="IP", index_method="HNSW32")
    assert not base.gallery_exists(ip)
    base.check_creatable(ip, overwrite=False)
    g = base.create_gallery(ip, DIM, model_fingerprint="m1", vectors=v, labels=labels, paths=paths_for(labels, "x"))
    assert base.gallery_exists(ip) and isinstance(g, store.cls) and base.store_class(store.name) is store.cls
    with pytest.raises(GalleryError, match="already exists"):
        base.check_creatable(ip, overwrite=False)
    base.check_creatable(ip, overwrite=True)
    opened = base.open_gallery(ip, model_fingerprint="m1", embedding_size=DIM)
    assert len(opened) == 30 and opened.manifest["dist_type"] == "IP" and opened.index_dir == store.index_dir("shop")
    again = base.open_or_create_gallery(ip, DIM, model_fingerprint="m1")
    assert len(again) == 30
    fresh = base.open_or_create_gallery(store.index_process("other"), DIM, model_fingerprint="m1")
    assert len(fresh) == 0 and base.gallery_exists(store.index_process("other"))
    located = {k: v for k, v in ip.items() if k not in ("index_dir", "uri")}
    with pytest.raises(ConfigError, match=r"IndexProcess\.(index_dir|uri) is required"):
        base.open_gallery(located)


def test_stores_are_chosen_by_name_without_importing_the_others():
    """IndexProcess.backend's choices are the registry's names; a FAISS run (config check, build, search)
    imports neither the Milvus store nor pymilvus, and a config check imports no store at all."""
    code = ("import sys\n"
            "from ppshitu.schemas import INDEX_PROCESS\n"
            "from ppshitu.gallery import base\n"
            "assert base.STORES.names() == ['faiss', 'milvus'], base.STORES.names()\n"
            "assert INDEX_PROCESS['backend'].choices == ['faiss', 'milvus']\n"
            "assert not {'faiss', 'pymilvus', 'ppshitu.gallery.gallery'} & set(sys.modules)\n"
            "import numpy as np, tempfile\n"
            "ip = {'backend': 'faiss', 'index_dir': tempfile.mkdtemp() + '/g', 'index_method': 'Flat'}\n"
            "g = base.create_gallery(ip, 4, vectors=np.eye(4, dtype='float32'), labels=list('abcd'))\n"
            "assert base.open_gallery(ip).search(np.eye(4, dtype='float32')[:1], 1)[0] == [['a']]\n"
            "print(sorted(m for m in ('pymilvus', 'ppshitu.gallery.milvus_store', 'faiss') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['faiss']"
