"""The gallery stores by config: the STORES registry and what opens or creates the gallery an IndexProcess
section names.

    gallery = open_gallery(cfg.IndexProcess, model_fingerprint=rec.fingerprint, embedding_size=rec.embedding_size)
    labels, scores, ids = gallery.search(vectors, k)

Stores: "faiss" (FAISS index + SQLite labels + manifest in a directory, `ppshitu/gallery/gallery.py`, atomic
versions) and "milvus" (`ppshitu/gallery/milvus_store.py`). A store is one module whose class implements
`interface.GalleryStore` (location_of, exists, check_creatable, open, create and the item methods) plus its
line in STORES below; `IndexProcess.backend` chooses it. Everything above the gallery (the recognition
system, build_gallery, the service, the library tools) uses only the interface's methods.

Where a gallery is, from an IndexProcess section: `gallery_location(ip)`; then `open_gallery(ip)`,
`create_gallery(ip, embedding_size, ...)`, `check_creatable(ip)`, `gallery_exists(ip)`,
`open_or_create_gallery(ip, ...)` (sharded builds: `parse_shard("I/N")`, `in_shard(path, shard)`).
"""
from ..errors import ConfigError
from ..registry import Registry
from .errors import GalleryError
from .indexes import AUTO, auto_method
# the interface, re-exported for the code above the gallery
from .interface import GalleryNotFound, GalleryStore, item_fields, path_hash, removal_targets  # noqa: F401

# IndexProcess.backend -> the store: one line per store, imported when a config selects it (a FAISS run never
# imports milvus_store, nor pymilvus)
STORES = Registry("gallery backend", {
    "faiss": "ppshitu.gallery.gallery:Gallery",
    "milvus": "ppshitu.gallery.milvus_store:MilvusStore",
})


def store_class(backend="faiss"):
    """The store class of IndexProcess.backend (its module is imported now)."""
    return STORES.get(backend, "IndexProcess.backend")


def gallery_location(index_process):
    """(store class, location, options) of the gallery an IndexProcess section names: the store's own
    `location_of(ip)` (faiss: `index_dir`; milvus: `uri` + `collection`)."""
    ip = index_process
    cls = store_class(ip.get("backend") or "faiss")
    location, options = cls.location_of(ip)
    return cls, location, dict(options)


def open_gallery(index_process, model_fingerprint=None, embedding_size=None):
    """The gallery an IndexProcess section names (`backend`; `index_dir`, or milvus's `uri` + `collection`)."""
    cls, location, options = gallery_location(index_process)
    return cls.open(location, model_fingerprint=model_fingerprint, embedding_size=embedding_size, **options)


def create_gallery(index_process, embedding_size, model_fingerprint=None, overwrite=False, vectors=None,
                   labels=None, paths=None, boxes=None, **index_params):
    """A new gallery where an IndexProcess section says, with its dist_type and index_method."""
    ip = index_process
    cls, location, options = gallery_location(ip)
    return cls.create(location, embedding_size, dist_type=ip.get("dist_type") or "IP",
                      index_method=_method(cls, ip, vectors), model_fingerprint=model_fingerprint,
                      overwrite=overwrite, vectors=vectors, labels=labels, paths=paths, boxes=boxes,
                      **options, **tuning_options(cls, ip), **index_params)


def tuning_options(cls, index_process):
    """{"tune_recall": IndexProcess.tune_recall} for a store that tunes its search setting on its own vectors
    (`tunes_search`: the faiss store), for its create / add; {} otherwise."""
    value = index_process.get("tune_recall")
    return {"tune_recall": value} if value is not None and getattr(cls, "tunes_search", False) else {}


def check_creatable(index_process, overwrite=False):
    """Raise unless create_gallery(index_process, overwrite=...) may write there (before any embedding):
    faiss checks the directory; milvus connects and checks that the server offers the index method."""
    ip = index_process
    cls, location, options = gallery_location(ip)
    cls.check_creatable(location, overwrite=overwrite, index_method=_method(cls, ip, None), **options)


def _method(cls, ip, vectors):
    """IndexProcess.index_method; `auto` resolved here (by the first vectors' count; none: Flat) for a
    store that does not choose by size itself (`chooses_auto`: the faiss store, re-chosen as it grows)."""
    method = ip.get("index_method") or "HNSW32"
    if method == AUTO and not getattr(cls, "chooses_auto", False):  # (Milvus: no fast-scan index)
        return auto_method(len(vectors) if vectors is not None else 0, fast_scan=False)
    return method


def gallery_exists(index_process):
    cls, location, options = gallery_location(index_process)
    return cls.exists(location, **options)


def open_or_create_gallery(index_process, embedding_size, model_fingerprint=None, **index_params):
    """Open the gallery, creating it empty first when it does not exist: what N shard processes that
    start at once use, so that whichever comes first creates it and the others open it (a create
    that loses the race fails and the gallery it lost to is opened)."""
    for _ in range(3):
        if not gallery_exists(index_process):
            try:
                create_gallery(index_process, embedding_size, model_fingerprint=model_fingerprint,
                               overwrite=False, **index_params)
            except GalleryError:
                if not gallery_exists(index_process):
                    raise
        try:
            return open_gallery(index_process, model_fingerprint=model_fingerprint, embedding_size=embedding_size)
        except GalleryNotFound:  # (dropped meanwhile by a `new` elsewhere: try again)
            continue
    raise GalleryError("the gallery kept disappearing while shards were opening it (a concurrent index_operation: "
                       "new?)")


# ---------------------------------------------------------------- sharded builds
def parse_shard(shard):
    """'I/N' (or (I, N)) -> (I, N) with 0 <= I < N; None -> None."""
    if shard is None:
        return None
    parts = shard.split("/") if isinstance(shard, str) else list(shard)
    try:
        index, count = (int(p) for p in parts)
    except (TypeError, ValueError):
        index, count = -1, 0
    if not 0 <= index < count:
        raise ConfigError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {shard!r}")
    return index, count


def in_shard(path, shard):
    """Whether shard (I, N) embeds `path`: path_hash(path) % N == I. The N shards are disjoint and cover
    every path, whichever machine computes them."""
    index, count = shard
    return path_hash(path) % count == index
