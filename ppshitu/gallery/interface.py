"""What every gallery store is: the interface a store module implements (a store imports this module,
never base.py, whose STORES registry names it), and what every store checks the same way: the model a
gallery belongs to (`check_model`), vectors (`_as_matrix`), `add`'s per-item fields (`item_fields`),
`remove`'s arguments (`removal_targets`), and the stable hash of an item's path (`path_hash`).
"""
import hashlib

import numpy as np

from .errors import GalleryError


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

    @classmethod
    def location_of(cls, index_process):
        """(location, {option: value}) of the gallery an IndexProcess section names (FAISS: `index_dir`;
        Milvus: `uri`, `collection`); the options go to open / create / exists / check_creatable."""
        raise NotImplementedError

    @classmethod
    def exists(cls, location, **options):
        raise NotImplementedError

    @classmethod
    def check_creatable(cls, location, overwrite=False, index_method=None, **options):
        """Raise unless create(location, overwrite=..., index_method=...) may write there (before anything
        is embedded); changes nothing."""
        raise NotImplementedError

    # -- reading
    def __len__(self):
        raise NotImplementedError

    index_dir = None            # where the gallery is, for messages (a directory, or uri#collection)

    def _model_record(self):
        """The store's record of the model its vectors came from: a dict with embedding_size (int),
        dist_type ("IP" | "L2") and model_fingerprint (FAISS: the manifest; Milvus: the collection's meta)."""
        raise NotImplementedError

    @property
    def embedding_size(self):
        return self._model_record()["embedding_size"]

    @property
    def dist_type(self):
        return self._model_record()["dist_type"]

    @property
    def higher_is_better(self):
        """IP scores are cosine similarities; L2 scores are squared distances (lower is better)."""
        return self.dist_type == "IP"

    @property
    def model_fingerprint(self):
        """The model whose vectors the gallery holds."""
        return self._model_record()["model_fingerprint"]

    # The published state this object last saw (at open, refresh() or its own write): a string that
    # changes with every write, whoever makes it (FAISS: the version name, 'v000007'; Milvus: a revision
    # token), so a reader may cache what it derived from the items until it changes. None: the store
    # cannot tell, and nothing derived from it may be cached.
    version = None

    def labels(self):
        """Sorted distinct labels."""
        return sorted(self.label_counts())

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

    def iter_items(self, batch_size=8192):
        """Yield (ids int64 [b], vectors float32 [b, D], records [b]) over every item (migrate_gallery)."""
        raise NotImplementedError

    def search(self, vectors, k=5):
        """(labels [n][k] (None in empty slots), scores float32 [n, k], ids int64 [n, k] (-1 when empty))."""
        raise NotImplementedError

    def check_model(self, model_fingerprint=None, embedding_size=None):
        """Refuse vectors from a model other than the one that built the gallery."""
        if embedding_size is not None and embedding_size != self.embedding_size:
            raise GalleryError(f"{self.index_dir}: the gallery holds {self.embedding_size}-d vectors but the "
                               f"model makes {embedding_size}-d ones; rebuild the gallery with this model")
        mine = self.model_fingerprint
        if model_fingerprint is not None and mine is not None and model_fingerprint != mine:
            raise GalleryError(f"{self.index_dir}: the gallery was built with model {mine}, not "
                               f"{model_fingerprint}; its vectors are not comparable, rebuild the gallery "
                               f"(tools/build_gallery.py with index_operation: new)")

    def set_search_params(self, ef_search=None, nprobe=None):
        raise NotImplementedError

    def search_setting(self):
        """{"param", "value", "origin": tuned | override | default, "record"} of the approximate search's knob,
        or None (exact search, or a store that does not tune: search_tuning.py)."""
        return None

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
        """The removed ids, of every item with one of `labels` or one of `paths` (removal_targets)."""
        raise NotImplementedError

    def compact(self):
        raise NotImplementedError

    def set_calibration(self, record):
        """Keep `record` (a JSON object: ppshitu/gallery/calibrate.py's score_thres calibration) as the gallery's
        `manifest["calibration"]`, changing no item (None drops it); later writes carry it on."""
        raise NotImplementedError

    # optional: relabel(old, new, model_fingerprint=None) -> (removed ids, new ids), one atomic update
    # (FAISS has it); without it the service renames by remove + add, two updates

    # -- shared by the stores
    def _result_slots(self, vectors, k):
        """search's start in every store: (queries as _as_matrix makes them, k, ids int64 [n, k] all -1,
        scores float32 [n, k] all `worst`, worst): the worst possible score, -inf for IP, +inf for L2."""
        q = self._as_matrix(vectors, "query vectors")
        k = int(k)
        if k < 1:
            raise GalleryError(f"k must be >= 1, got {k}")
        worst = -np.inf if self.higher_is_better else np.inf
        return q, k, np.full((len(q), k), -1, np.int64), np.full((len(q), k), worst, np.float32), worst

    def _as_matrix(self, vectors, what):
        """float32 C-contiguous [n, D] of `vectors` (one vector: n = 1), finite, of the gallery's size;
        L2-normalized for dist_type IP (a zero vector stays zero)."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.embedding_size:
            raise GalleryError(f"{what}: expected shape [n, {self.embedding_size}] (the gallery's embedding "
                               f"size), got {list(np.shape(vectors))}")
        if not np.isfinite(v).all():
            raise GalleryError(f"{what}: contain NaN or infinite values")
        v = np.ascontiguousarray(v)
        if self.dist_type == "IP":  # IP is meant as cosine
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            v = v / np.where(norms > 0, norms, 1)
        return v


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


def removal_targets(labels=None, paths=None):
    """`remove`'s arguments as two lists (a single string is one label / one path); neither given is an
    error (an empty list is not: it removes nothing)."""
    if labels is None and paths is None:
        raise GalleryError("remove needs labels or paths")
    labels = [labels] if isinstance(labels, str) else list(labels or [])
    paths = [paths] if isinstance(paths, str) else list(paths or [])
    return labels, paths


def path_hash(path):
    """A stable 63-bit hash of an image path (sha256 of its UTF-8 text): the same in every process and
    on every machine. Milvus galleries use it as the item's primary key; sharded builds split by it."""
    digest = hashlib.sha256(str(path).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)
