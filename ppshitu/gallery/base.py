"""The gallery interface every store implements, and the registry that picks one by config.

    gallery = open_gallery(cfg.IndexProcess, model_fingerprint=rec.fingerprint, embedding_size=rec.embedding_size)
    labels, scores, ids = gallery.search(vectors, k)

Stores: "faiss" (FAISS index + SQLite labels + manifest in a directory, `ppshitu/gallery/gallery.py`, atomic
versions) is the first; another (e.g. Milvus) is one module that subclasses `GalleryStore`, registers itself
in STORES and is chosen by `IndexProcess.backend`. Everything above the gallery (the recognition system,
build_gallery, the service, the library tools) uses only the methods below.
"""
from ..registry import Registry

STORES = Registry("gallery backend")


class GalleryStore:
    """What a gallery offers. Vectors are float32 [n, D]; ids are stable int64, never reused; with
    dist_type IP vectors and queries are L2-normalized, so scores are cosines (higher is better)."""

    # -- open / create (classmethods of each store; `location` is its directory or URI)
    @classmethod
    def open(cls, location, model_fingerprint=None, embedding_size=None, **options):
        raise NotImplementedError

    @classmethod
    def create(cls, location, embedding_size, dist_type="IP", index_method="HNSW32", model_fingerprint=None,
               overwrite=False, vectors=None, labels=None, paths=None, boxes=None, **index_params):
        raise NotImplementedError

    # -- reading
    def __len__(self):
        raise NotImplementedError

    embedding_size = None       # int
    higher_is_better = True     # IP: cosine; L2: squared distance
    model_fingerprint = None    # the model whose vectors it holds

    def labels(self):
        """Sorted distinct labels."""
        raise NotImplementedError

    def label_counts(self):
        raise NotImplementedError

    def records(self, ids=None):
        """[{id, label, path, box}] for `ids` (all when None)."""
        raise NotImplementedError

    def existing_paths(self, paths):
        """The subset of `paths` already in the gallery (append is idempotent by path)."""
        raise NotImplementedError

    def search(self, vectors, k=5):
        """(labels [n][k] (None in empty slots), scores float32 [n, k], ids int64 [n, k] (-1 when empty))."""
        raise NotImplementedError

    def check_model(self, model_fingerprint=None, embedding_size=None):
        raise NotImplementedError

    def set_search_params(self, **params):
        raise NotImplementedError

    def refresh(self):
        """Move to the newest published state (another process may have written)."""
        raise NotImplementedError

    # -- writing (each call completes or changes nothing)
    def add(self, vectors, labels, paths=None, boxes=None, model_fingerprint=None):
        """New ids, -1 where the path was already present."""
        raise NotImplementedError

    def remove(self, labels=None, paths=None):
        raise NotImplementedError

    def compact(self):
        raise NotImplementedError


def store_class(backend="faiss"):
    if backend == "faiss" and "faiss" not in STORES:
        from .gallery import Gallery
        STORES.register("faiss")(Gallery)
    if backend == "milvus" and "milvus" not in STORES:
        from . import milvus_store  # noqa: F401  (registers "milvus"; needs pymilvus)
    return STORES.get(backend, "IndexProcess.backend")


def open_gallery(index_process, model_fingerprint=None, embedding_size=None):
    """The gallery an IndexProcess section names (`backend`, `index_dir`)."""
    ip = index_process
    return store_class(ip.get("backend") or "faiss").open(ip["index_dir"], model_fingerprint=model_fingerprint,
                                                          embedding_size=embedding_size)
