"""The gallery interface every store implements, and the registry that picks one by config.

    gallery = open_gallery(cfg.IndexProcess, model_fingerprint=rec.fingerprint, embedding_size=rec.embedding_size)
    labels, scores, ids = gallery.search(vectors, k)

Stores: "faiss" (FAISS index + SQLite labels + manifest in a directory, `ppshitu/gallery/gallery.py`, atomic
versions) is the first; another (e.g. Milvus) is one module that subclasses `GalleryStore`, registers itself
in STORES and is chosen by `IndexProcess.backend`. Everything above the gallery (the recognition system,
build_gallery, the service, the library tools) uses only the methods below.

Where a gallery is, from an IndexProcess section: `gallery_location(ip)`; then `open_gallery(ip)`,
`create_gallery(ip, embedding_size, ...)`, `check_creatable(ip)`, `gallery_exists(ip)`,
`open_or_create_gallery(ip, ...)` (sharded builds: `parse_shard("I/N")`, `in_shard(path, shard)`).
"""
import hashlib

from ..errors import ConfigError
from ..registry import Registry
from .errors import GalleryError

STORES = Registry("gallery backend")


class GalleryNotFound(GalleryError):
    """No gallery at the location (a store raises it from open(); open_or_create_gallery relies on it)."""


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
    # The published state this object last saw (at open, refresh() or its own write): a string that
    # changes with every write, whoever makes it (FAISS: the version name, 'v000007'; Milvus: a revision
    # token), so a reader may cache what it derived from the items until it changes. None: the store
    # cannot tell, and nothing derived from it may be cached.
    version = None

    def labels(self):
        """Sorted distinct labels."""
        raise NotImplementedError

    def label_counts(self):
        raise NotImplementedError

    def records(self, ids=None):
        """[{id, label, path, box}] for `ids` (all when None)."""
        raise NotImplementedError

    def get_vectors(self, ids):
        """float32 [len(ids), D]: the stored vectors of `ids`, in that order (L2-normalized with dist_type
        IP, as searched); a GalleryError names an id that is not in the gallery."""
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

    def close(self):
        """Release what the object holds (files, connections; a Milvus Lite file once every store of it
        in this process is closed)."""

    # -- writing (each call completes or changes nothing)
    def add(self, vectors, labels, paths=None, boxes=None, model_fingerprint=None):
        """New ids, -1 where the path was already present."""
        raise NotImplementedError

    def remove(self, labels=None, paths=None):
        raise NotImplementedError

    def compact(self):
        raise NotImplementedError

    # optional: relabel(old, new, model_fingerprint=None) -> (removed ids, new ids), one atomic update
    # (FAISS has it); without it the service renames by remove + add, two updates


def item_fields(n, labels, paths, boxes):
    """`add`'s per-item fields as lists of n, checked the same way by every store: a label (one string
    for all, or one each), a path or None, a box [x1, y1, x2, y2] or None."""
    labels = [labels] * n if isinstance(labels, str) else list(labels)
    paths = [None] * n if paths is None else [None if p is None else str(p) for p in paths]
    boxes = [None] * n if boxes is None else [None if b is None else [float(x) for x in b] for b in boxes]
    for name, seq in (("labels", labels), ("paths", paths), ("boxes", boxes)):
        if len(seq) != n:
            raise GalleryError(f"add: {n} vectors but {len(seq)} {name}")
    bad = [i for i, lab in enumerate(labels) if not isinstance(lab, str) or not lab.strip()]
    if bad:
        raise GalleryError(f"add: labels must be non-empty strings; item {bad[0]} has {labels[bad[0]]!r}")
    bad = [i for i, b in enumerate(boxes) if b is not None and len(b) != 4]
    if bad:
        raise GalleryError(f"add: a box is [x1, y1, x2, y2]; item {bad[0]} has {boxes[bad[0]]!r}")
    return labels, paths, boxes


def store_class(backend="faiss"):
    if backend == "faiss":
        from . import gallery  # noqa: F401  (registers "faiss")
    if backend == "milvus" and "milvus" not in STORES:
        from . import milvus_store  # noqa: F401  (registers "milvus"; needs pymilvus)
    return STORES.get(backend, "IndexProcess.backend")


def gallery_location(index_process):
    """(store class, location, options) of the gallery an IndexProcess section names:
    faiss -> `index_dir`; another store -> its own `location_of(ip)` (milvus: `uri` + `collection`)."""
    ip = index_process
    cls = store_class(ip.get("backend") or "faiss")
    location_of = getattr(cls, "location_of", None)
    if location_of is not None:
        location, options = location_of(ip)
        return cls, location, dict(options)
    if not ip.get("index_dir"):
        raise ConfigError("IndexProcess.index_dir is required (the gallery's directory)")
    return cls, ip["index_dir"], {}


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
                      index_method=ip.get("index_method") or "HNSW32", model_fingerprint=model_fingerprint,
                      overwrite=overwrite, vectors=vectors, labels=labels, paths=paths, boxes=boxes,
                      **options, **index_params)


def check_creatable(index_process, overwrite=False):
    """Raise unless create_gallery(index_process, overwrite=...) may write there (before any embedding):
    faiss checks the directory; milvus connects and checks that the server offers the index method."""
    ip = index_process
    cls, location, options = gallery_location(ip)
    if getattr(cls, "location_of", None) is not None:
        options["index_method"] = ip.get("index_method") or "HNSW32"
    cls.check_creatable(location, overwrite=overwrite, **options)


def gallery_exists(index_process):
    cls, location, options = gallery_location(index_process)
    exists = getattr(cls, "exists", None)
    if exists is not None:
        return exists(location, **options)
    from . import layout
    return layout.is_gallery(location)


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
def path_hash(path):
    """A stable 63-bit hash of an image path (sha256 of its UTF-8 text): the same in every process and
    on every machine. Milvus galleries use it as the item's primary key; sharded builds split by it."""
    digest = hashlib.sha256(str(path).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


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
