"""Importing a PP-ShiTu index directory, written the way PaddleClas' build_gallery.py
writes it (IndexIDMap2 + a pickled {numpy int64: 'path<TAB>label'} dict)."""
import os
import pickle
import subprocess
import sys

import faiss
import numpy as np
import pytest

from ppshitu.gallery import Gallery, GalleryError
from ppshitu.gallery.migrate import convert_ppshitu_index, read_id_map

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIM = 16


def write_ppshitu_index(index_dir, factory, n=120, remove_label=None):
    """Mirror of PP-ShiTu's GalleryBuilder: index_factory + IndexIDMap2, ids from np.arange."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    faiss.normalize_L2(vectors)
    docs = [f"images/{i:03d}.jpg\tbrand {i % 7}" for i in range(n)]
    index = faiss.IndexIDMap2(faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT))
    ids_now = np.arange(0, n).astype(np.int64)
    index.train(vectors)
    index.add_with_ids(vectors, ids_now)
    id_map = {i: d for i, d in zip(list(ids_now), docs)}   # keys are numpy int64, as theirs are
    if remove_label:
        gone = np.asarray([k for k, d in id_map.items() if d.endswith(remove_label)])
        index.remove_ids(gone)
        for k in gone:
            del id_map[k]
    os.makedirs(index_dir, exist_ok=True)
    faiss.write_index(index, os.path.join(index_dir, "vector.index"))
    with open(os.path.join(index_dir, "id_map.pkl"), "wb") as f:
        pickle.dump(id_map, f)
    return index, id_map, vectors


@pytest.mark.parametrize("factory,method", [("Flat", "Flat"), ("HNSW32", "HNSW32"), ("IVF4,Flat", "IVF")])
def test_converted_gallery_answers_like_the_ppshitu_index(tmp_path, factory, method):
    index, id_map, vectors = write_ppshitu_index(tmp_path / "pp", factory)
    g = convert_ppshitu_index(tmp_path / "pp", tmp_path / "g")
    assert g.manifest["index_method"] == method and g.model_fingerprint is None
    assert len(g) == len(id_map) and g.manifest["dist_type"] == "IP"
    queries = vectors[:20] + 0.05 * np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
    exact = np.argmax(queries @ vectors.T, axis=1)
    labels, _, ids = Gallery.open(tmp_path / "g").search(queries, k=1)
    assert ids[:, 0].tolist() == exact.tolist()
    assert [row[0] for row in labels] == [id_map[i].split("\t")[1] for i in exact]
    rec = g.records([5])[0]
    assert rec["path"] == "images/005.jpg" and rec["label"] == "brand 5"


def test_converted_ids_survive_ppshitu_removals(tmp_path):
    _, id_map, vectors = write_ppshitu_index(tmp_path / "pp", "Flat", remove_label="brand 3")
    g = convert_ppshitu_index(tmp_path / "pp", tmp_path / "g")
    assert "brand 3" not in g.labels() and len(g) == len(id_map)
    _, _, ids = g.search(vectors[10], k=1)              # item 10 is "brand 3": removed
    assert ids[0, 0] != 10
    _, _, ids = g.search(vectors[11], k=1)
    assert ids[0, 0] == 11                               # the original ids are kept
    assert g.add(vectors[:1], ["new"])[0] == max(id_map) + 1


def test_read_id_map_gives_plain_ints_and_strings(tmp_path):
    _, id_map, _ = write_ppshitu_index(tmp_path / "pp", "Flat", n=5)
    read = read_id_map(tmp_path / "pp" / "id_map.pkl")
    assert read == {int(k): v for k, v in id_map.items()}
    assert all(type(k) is int for k in read)


MARKER = "/tmp/ppshitu_pickle_exploit_marker"


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.mark.parametrize("payload", [
    {0: Exploit()},
    {np.float64(1.5): "images/a.jpg\tx"},            # numpy, but not an integer id
    {0: np.array(["images/a.jpg\tx"], dtype=object)},
    [1, 2, 3],
])
def test_malicious_or_foreign_pickles_are_refused(tmp_path, payload):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    path = tmp_path / "id_map.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(GalleryError, match="id_map.pkl"):
        read_id_map(path)
    assert not os.path.exists(MARKER)


def test_converter_tool_end_to_end(tmp_path):
    write_ppshitu_index(tmp_path / "pp", "HNSW32", n=30)
    tool = os.path.join(ROOT, "tools", "convert_ppshitu_index.py")
    done = subprocess.run([sys.executable, tool, str(tmp_path / "pp"), str(tmp_path / "g"), "--index-method", "Flat"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported 30 vectors, 7 labels (Flat" in done.stdout
    again = subprocess.run([sys.executable, tool, str(tmp_path / "pp"), str(tmp_path / "g")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert Gallery.open(tmp_path / "g").manifest["index_method"] == "Flat"
    (tmp_path / "bad").mkdir()
    bad = subprocess.run([sys.executable, tool, str(tmp_path / "bad"), str(tmp_path / "g2")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "vector.index: missing" in bad.stderr
