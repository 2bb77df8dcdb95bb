"""Copy a gallery between stores (FAISS directory <-> Milvus URI), the library behind
tools/migrate_gallery.py.

    summary = migrate("galleries/shop", "milvus.db#shop")             # FAISS -> Milvus Lite
    summary = migrate("http://milvus:19530#shop", "galleries/shop2")  # Milvus -> FAISS

What moves: every item's vector, label, path and box, and the gallery's embedding size, dist_type,
model fingerprint, index method and its parameters (another index method can be asked for, e.g.
IVFPQ, which Milvus Lite does not build). Ids do not move: each store numbers its items its own way
(FAISS 0, 1, 2, ...; Milvus the hash of the path). The destination is written as one `create`,
atomic on both stores (FAISS: one published version; Milvus: the alias moves once the collection is
complete), so an interrupted migration leaves no half gallery and is simply run again.

Verified after the copy: the counts, the per-label counts, and a search for a sample of the stored
vectors in both galleries: the same top-1 label for each (a different label is accepted only for an
exact tie, two stored items with the same score). The vectors are held in memory while they are
copied (N x D x 4 bytes).
"""
import os
from urllib.parse import urlparse

import numpy as np

from ..errors import ConfigError
from .base import store_class
from .errors import GalleryError

TIE = 1e-5


def parse_target(text, collection=None):
    """(backend, location, options) of a gallery named on the command line: a URI (`*.db` file,
    http(s)://...) with an optional `#collection` is Milvus, anything else a FAISS directory."""
    text = os.fspath(text)
    bare = text.split("#", 1)[0]
    if urlparse(bare).scheme.lower() in ("http", "https", "tcp", "grpc", "unix") or bare.endswith(".db"):
        return "milvus", text, {"collection": collection}
    if "#" in text or collection:
        raise ConfigError(f"{text}: a collection applies to a Milvus URI (file.db or http://host:19530), not to a "
                          f"FAISS directory")
    return "faiss", text, {}


def open_target(text, collection=None):
    backend, location, options = parse_target(text, collection)
    return store_class(backend).open(location, **options)


def read_items(gallery):
    """(vectors float32 [n, D], records [{id, label, path, box}]) of every item of a gallery of any store."""
    vectors, records = [], []
    for _, vecs, recs in gallery.iter_items():
        vectors.append(vecs)
        records += recs
    if not vectors:
        return np.zeros((0, gallery.embedding_size), np.float32), []
    return np.concatenate(vectors), records


def index_params_for(method_name, source_manifest):
    """The source's index parameters when the method stays the same (else the new method's defaults)."""
    if method_name != source_manifest.get("index_method"):
        return {}
    return {k: v for k, v in (source_manifest.get("index_params") or {}).items() if v is not None}


def migrate(src, dst, src_collection=None, dst_collection=None, index_method=None, overwrite=False, sample=200,
            seed=0):
    """Copy gallery `src` to `dst` (see the module docstring); returns a summary dict. Raises GalleryError
    when the verification fails (the destination is left for inspection)."""
    source = open_target(src, src_collection)
    try:
        manifest = source.manifest
        vectors, records = read_items(source)
        method = index_method or manifest["index_method"]
        backend, location, options = parse_target(dst, dst_collection)
        cls = store_class(backend)
        cls.check_creatable(location, overwrite=overwrite, index_method=method, **options)
        dest = cls.create(location, int(manifest["embedding_size"]), dist_type=manifest["dist_type"],
                          index_method=method, model_fingerprint=manifest.get("model_fingerprint"),
                          overwrite=overwrite, vectors=vectors if len(vectors) else None,
                          labels=[r["label"] for r in records] if len(vectors) else None,
                          paths=[r["path"] for r in records] if len(vectors) else None,
                          boxes=[r["box"] for r in records] if len(vectors) else None,
                          **options, **index_params_for(method, manifest))
        try:
            checked = verify(source, dest, vectors, sample=sample, seed=seed)
        finally:
            close = getattr(dest, "close", None)
            if close:
                close()
    finally:
        close = getattr(source, "close", None)
        if close:
            close()
    return {"source": str(src), "destination": str(dst), "count": len(records), "labels": checked["labels"],
            "index_method": method, "dist_type": manifest["dist_type"],
            "model_fingerprint": manifest.get("model_fingerprint"), "sampled": checked["sampled"],
            "same_top1": checked["same_top1"], "ties": checked["ties"]}


def verify(source, dest, vectors, sample=200, seed=0):
    """Counts, label counts, fingerprint and a sample search agree between two galleries."""
    n_src, n_dst = len(source), len(dest)
    if n_src != n_dst:
        raise GalleryError(f"migration check: the source holds {n_src} items, the destination {n_dst}")
    src_counts, dst_counts = source.label_counts(), dest.label_counts()
    if src_counts != dst_counts:
        diff = sorted(set(src_counts.items()) ^ set(dst_counts.items()))[:5]
        raise GalleryError(f"migration check: per-label counts differ, e.g. {diff}")
    if source.model_fingerprint != dest.model_fingerprint:
        raise GalleryError(f"migration check: fingerprint {dest.model_fingerprint} != {source.model_fingerprint}")
    picked = np.random.default_rng(seed).choice(len(vectors), min(sample, len(vectors)), replace=False) \
        if len(vectors) else np.zeros(0, np.int64)
    q = vectors[picked]
    same = ties = 0
    if len(q):
        a_labels, a_scores, _ = source.search(q, k=2)
        b_labels, b_scores, _ = dest.search(q, k=1)
        for i in range(len(q)):
            if a_labels[i][0] == b_labels[i][0]:
                same += 1
            elif abs(float(b_scores[i, 0]) - float(a_scores[i, 0])) <= TIE and \
                    (a_labels[i][1] == b_labels[i][0] or abs(float(a_scores[i, 1]) - float(a_scores[i, 0])) <= TIE):
                ties += 1  # two stored items equally close: either may come first
            else:
                raise GalleryError(f"migration check: stored vector {int(picked[i])} finds {b_labels[i][0]!r} "
                                   f"(score {float(b_scores[i, 0]):.5f}) in the destination but "
                                   f"{a_labels[i][0]!r} ({float(a_scores[i, 0]):.5f}) in the source")
    return {"labels": len(src_counts), "sampled": int(len(q)), "same_top1": same, "ties": ties}
