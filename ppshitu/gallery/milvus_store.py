"""A gallery in Milvus: the store behind `IndexProcess.backend: milvus`, the same client code for
Milvus Lite (embedded; `uri` is a local `*.db` path) and Milvus Standalone / Distributed
(`uri: http://host:19530`). The token comes from $PPSHITU_MILVUS_TOKEN, never from a config.

    IndexProcess: {backend: milvus, uri: ./gallery.db, collection: products, index_method: HNSW32}
    g = MilvusStore.create("gallery.db", 512, collection="products", model_fingerprint=fp)
    g = MilvusStore.open("http://milvus:19530#products", model_fingerprint=fp, embedding_size=512)

Semantics are the FAISS gallery's (`gallery.py`), with these Milvus-specific facts:

* Location: the URI; the collection is `collection=` or the URI's `#name` (default `ppshitu_gallery`).
  The collection name is an alias; the data live in a physical collection `<name>__v<stamp>` behind it.
  `create(overwrite=True)` (index_operation `new`) fills a new physical collection, builds its index and
  only then moves the alias, so readers see the old gallery or the complete new one, never a half
  one; the old physical collection is dropped.
* Items: primary key = `path_hash(path)` (a stable 63-bit sha256 of the path; a random key for an
  item without a path), vector, label, path, box, added_at. An item's id is therefore stable per
  path: a path removed and added again gets its old id back (FAISS: a new one).
* Metadata (format, embedding size, dist_type, index method and params, model fingerprint) is a JSON
  collection property (`ppshitu_gallery`), also written into the collection description.
* Revision: a second property (`ppshitu_revision`), a fresh random token written after every add,
  remove and compact that changed something, and by `new` (a new collection): `version` is the one this
  object last read (open, refresh(), its own write), so a reader may cache what it derived from the
  items until it changes, across processes. A key of its own, written blind: the metadata JSON is
  rewritten whole (read, modify, write), so two writers bumping a counter in it could lose a bump or
  put back a fingerprint the other just set. A writer killed between its rows and the token leaves the
  token unchanged until the next write. Milvus Lite alters properties unsynchronized (every call
  rewrites the collection's schema.json through one fixed temporary name: two at once fail, or worse),
  so this process alters them one at a time, which covers an embedded file (one process); Lite's server
  mode, written by several processes, gets no revision: `version` is None there (readers cache nothing).
* Scores: IP on L2-normalized vectors (a cosine, as FAISS); L2 is the squared distance, which is what
  Milvus returns (Milvus Lite squares its internal Euclidean distance too), so no conversion.
* Index methods: each method maps itself (index_methods.py: `milvus_type`, `milvus_params`): Flat ->
  FLAT, HNSW32 -> HNSW (M 32, efConstruction and efSearch as FAISS's gallery), IVF -> IVF_FLAT (nlist,
  nprobe as FAISS's), IVFPQ -> IVF_PQ (+ exact rerank of `rerank_factor` x k candidates). One the server
  does not build (Milvus Lite 3 has no IVF_PQ, and accepts unknown index types only to fail building them
  later) is refused at create.
* Not atomic in Milvus: a batch add. `add` checks which paths are present (by primary key), then
  inserts the rest in batches of INSERT_BATCH rows, one insert call each. A crash (SIGKILL) leaves the
  batches that were sent, each complete or absent (Milvus Lite: one WAL record per call; a torn tail
  record is dropped when it reopens), never a partial row; re-running the same append skips what is
  present and inserts the rest: no duplicates, nothing missing. `remove` queries the ids, then deletes
  them: a crash leaves some removed, a rerun removes the rest. A crashed `new` leaves an unpublished
  physical collection (the alias still names the old gallery), dropped by the next `new`.
* Visibility: every process sees an append or remove as soon as it returns (Strong consistency), with no
  refresh() (which re-reads only the revision and the metadata); a store object pins the physical
  collection it opened, so only a `new` elsewhere needs refresh() (a search that finds its collection
  dropped refreshes by itself, and fails if the new gallery holds another model's vectors).
* Milvus Lite is one process's embedded database: a second process cannot open the same `.db` while
  the first has it open (closing every store of that file in a process releases it). For several
  processes (sharded builds, a service beside a build) serve the file:
  `milvus-lite server --data-dir gallery.db --port 19530` and use `uri: http://127.0.0.1:19530`.
"""
import json
import logging
import os
import re
import secrets
import threading
import time
from urllib.parse import urlparse

import numpy as np

from ..errors import ConfigError
from .errors import GalleryError
from .indexes import INDEX_METHODS
from .interface import GalleryNotFound, GalleryStore, item_fields, path_hash, removal_targets

try:
    from pymilvus import DataType, MilvusClient, MilvusException
except ImportError as e:  # pragma: no cover - the backend is optional
    raise GalleryError("IndexProcess.backend milvus needs pymilvus and milvus-lite: "
                       "pip install 'pymilvus>=3.0' 'milvus-lite>=3.2'") from e

log = logging.getLogger("ppshitu.gallery")
# Milvus Lite answers no MVCC timestamp, and pymilvus's query iterator warns about it on every call
logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(
    lambda record: "mvccTs" not in record.getMessage())


def _not_alloc_timestamp(record):
    """...and the embedded server logs the AllocTimestamp call it does not implement, with a traceback."""
    if not record.exc_info or "not implemented" not in record.getMessage().lower():
        return True
    import traceback
    return "AllocTimestamp" not in "".join(traceback.format_exception(*record.exc_info))


logging.getLogger("grpc._server").addFilter(_not_alloc_timestamp)

TOKEN_ENV = "PPSHITU_MILVUS_TOKEN"
DEFAULT_COLLECTION = "ppshitu_gallery"
FORMAT = "ppshitu-gallery-milvus"
FORMAT_VERSION = 1
META_KEY = "ppshitu_gallery"
REVISION_KEY = "ppshitu_revision"
VERSION_SEP = "__v"
INSERT_BATCH = 1000      # rows per insert call: 2 MB at 512-d, far below gRPC's message limit
SEARCH_BATCH = 1024      # queries per search call
QUERY_BATCH = 1000       # ids per `id in [...]` query / delete
ITER_BATCH = 8192        # rows per page when reading every item
MAX_LABEL_BYTES, MAX_PATH_BYTES, MAX_BOX_BYTES = 1024, 4096, 256
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
# What Milvus Lite 3.x builds (milvus_lite/index/factory.py). It accepts any index_type at
# create_index and fails only when it builds a segment's index, in a background thread, falling
# back to brute force: so an index it does not build is refused here, before any data is written.
LITE_INDEXES = ("AUTOINDEX", "BRUTE_FORCE", "FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")
INDEX_WAIT_S = 3600      # longest wait for the server's index build before a `new` is published

_alter_lock = threading.Lock()  # property writes, one at a time in this process (Milvus Lite: see Revision)
_open_lite = {}          # abs path of a Milvus Lite file -> open store objects in this process
_open_lite_lock = threading.Lock()


# ---------------------------------------------------------------- locations
def split_location(location, collection=None):
    """(uri, collection) from 'file.db', 'file.db#name', 'http://host:19530#name' and `collection=`."""
    uri = os.fspath(location)
    fragment = None
    if "#" in uri:
        uri, fragment = uri.rsplit("#", 1)
    if collection and fragment and collection != fragment:
        raise ConfigError(f"IndexProcess.collection is {collection!r} but the uri {location!r} names "
                          f"collection {fragment!r}; give one of them")
    name = collection or fragment or DEFAULT_COLLECTION
    if not NAME_RE.match(name) or VERSION_SEP in name:
        raise ConfigError(f"IndexProcess.collection: {name!r} is not a valid Milvus collection name (letters, "
                          f"digits and _, starting with a letter or _, at most 200 characters, no "
                          f"'{VERSION_SEP}')")
    if not uri:
        raise ConfigError("IndexProcess.uri is required for backend milvus (a Milvus Lite file such as "
                          "./gallery.db, or http://host:19530)")
    if is_local(uri):
        if not uri.endswith(".db"):
            raise ConfigError(f"IndexProcess.uri: {uri!r} is neither a Milvus Lite file (a local path ending in "
                              f".db) nor a server (http://host:19530)")
        uri = os.path.abspath(uri)
    return uri, name


def is_local(uri):
    return urlparse(uri).scheme.lower() not in ("http", "https", "tcp", "unix", "grpc")


def _lite_lock_free(path):
    """False when another process holds the Milvus Lite file open (its LOCK is flocked)."""
    with _open_lite_lock:
        if _open_lite.get(path):
            return True  # this process has it open: the same embedded server is reused
    try:
        from milvus_lite.server_manager import server_manager_instance
        if path in getattr(server_manager_instance, "_servers", {}):
            return True
    except ImportError:  # pragma: no cover
        return True
    lock = os.path.join(path, "LOCK")
    if not os.path.isfile(lock):
        return True
    import fcntl
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def connect(uri, must_exist=False):
    """A MilvusClient for `uri` (already split). Local files: refused when another process has them open."""
    if is_local(uri):
        if must_exist and not os.path.exists(uri):
            raise GalleryNotFound(f"{uri}: no Milvus Lite database there (build the gallery first: "
                                  f"tools/build_gallery.py with index_operation: new)")
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        if not _lite_lock_free(uri):
            raise GalleryError(f"{uri}: another process has this Milvus Lite database open (Milvus Lite is "
                               f"embedded: one process at a time). To share it, serve it: milvus-lite server "
                               f"--data-dir {uri} --port 19530, and use uri http://127.0.0.1:19530")
        try:
            return MilvusClient(uri=uri)
        except Exception as e:  # noqa: BLE001 - pymilvus raises several kinds here
            raise GalleryError(f"{uri}: cannot open the Milvus Lite database ({e})") from None
    token = os.environ.get(TOKEN_ENV) or ""
    try:
        return MilvusClient(uri=uri, token=token)
    except Exception as e:  # noqa: BLE001
        raise GalleryError(f"cannot connect to Milvus at {uri} ({e}); is the server running? (a token, if it "
                           f"needs one, comes from ${TOKEN_ENV})") from None


def offered_indexes(client):
    """(server name, the vector index types it builds, or None: all of Milvus's)."""
    try:
        version = str(client.get_server_version())
    except Exception:  # noqa: BLE001
        version = "unknown"
    if version.startswith("milvus_lite"):
        return version, LITE_INDEXES
    return f"Milvus {version}", None


def milvus_index(method_name, method, n_vectors, offered, server):
    """(index_type, build params, search params) of an index method (its own Milvus mapping) on this server."""
    index_type = method.milvus_type
    if index_type is None:
        raise ConfigError(f"IndexProcess.index_method {method_name!r} has no Milvus counterpart")
    if offered is not None and index_type not in offered:
        ours = [m for m in INDEX_METHODS.names(alias_of=None) if INDEX_METHODS.get(m).milvus_type in offered]
        raise ConfigError(f"IndexProcess.index_method {method_name} needs Milvus's {index_type} index, which "
                          f"{server} does not build; it builds {', '.join(offered)} (index_method "
                          f"{', '.join(ours)}). Choose one of those, or use Milvus Standalone / Distributed")
    build, search = method.milvus_params(n_vectors)
    return index_type, build, search


def _quote(text):
    """A Milvus string literal (double quotes, backslash escapes; non-ASCII kept as it is)."""
    return json.dumps(str(text), ensure_ascii=False)


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _CollectionGone(GalleryError):
    """The physical collection a store object read was dropped (a `new` replaced the gallery)."""

    def __init__(self, physical):
        super().__init__(f"collection {physical} no longer exists: the gallery was replaced (index_operation: "
                         f"new); refresh() or reopen it")


_quiet = threading.local()


class _expect_missing:
    """While active in this thread, pymilvus's error log of a missing collection is not printed (the
    store handles that case)."""

    def __enter__(self):
        _quiet.active = True

    def __exit__(self, *exc):
        _quiet.active = False


def _quiet_filter(record):
    return not (getattr(_quiet, "active", False) and "does not exist" in record.getMessage())


logging.getLogger("pymilvus.decorators").addFilter(_quiet_filter)


def _is_missing(err):
    text = str(err).lower()
    return "not exist" in text or "not found" in text or "can't find" in text


# ---------------------------------------------------------------- the store
class MilvusStore(GalleryStore):
    """The "milvus" store (gallery/base.py's STORES); see the module docstring. Use MilvusStore.open() /
    create() (or base.open_gallery(ip))."""

    def __init__(self, uri, collection, client, server, offered):
        self.uri, self.collection, self._client = uri, collection, client
        self.server, self.offered = server, offered
        self._revisions = is_local(uri) or not server.startswith("milvus_lite")  # (see Revision)
        self.physical = None
        self.meta = None
        self.method = None       # the index method (index_methods.py), from the metadata
        self.version = None
        self._lock = threading.Lock()
        self._calibrated = None
        self._search = {}
        if is_local(uri):
            with _open_lite_lock:
                _open_lite[uri] = _open_lite.get(uri, 0) + 1
        self._closed = False

    # ------------------------------------------------------------ locations
    @classmethod
    def location_of(cls, index_process):
        """(uri, {"collection": ...}) from IndexProcess: `uri` (falling back to `index_dir`) and `collection`."""
        ip = index_process
        uri = ip.get("uri") or ip.get("index_dir")
        if not uri:
            raise ConfigError("IndexProcess.uri is required for backend milvus (a Milvus Lite file such as "
                              "./gallery.db, or http://host:19530; the token comes from $PPSHITU_MILVUS_TOKEN)")
        return os.fspath(uri), {"collection": ip.get("collection")}

    @property
    def index_dir(self):
        """Where the gallery is, for messages (the FAISS store's attribute of the same name)."""
        return f"{self.uri}#{self.collection}"

    location = index_dir

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def _connect(cls, location, collection, must_exist):
        uri, name = split_location(location, collection)
        client = connect(uri, must_exist=must_exist)
        server, offered = offered_indexes(client)
        return cls(uri, name, client, server, offered)

    @classmethod
    def open(cls, location, model_fingerprint=None, embedding_size=None, collection=None, **options):
        """Open the gallery; with a model's fingerprint / embedding size, check they match."""
        if options:
            raise ConfigError(f"MilvusStore.open: unknown options {sorted(options)}")
        g = cls._connect(location, collection, must_exist=True)
        try:
            physical = g._resolve()
            if physical is None:
                raise GalleryNotFound(f"{g.index_dir}: no gallery there (build it first: tools/build_gallery.py "
                                      f"with index_operation: new)")
            g._load(physical)
            if model_fingerprint is not None or embedding_size is not None:
                g.check_model(model_fingerprint, embedding_size)
        except BaseException:
            g.close()
            raise
        return g

    @classmethod
    def exists(cls, location, collection=None):
        uri, _ = split_location(location, collection)
        if is_local(uri) and not os.path.exists(uri):
            return False
        g = cls._connect(location, collection, must_exist=False)
        try:
            return g._resolve() is not None
        finally:
            g.close()

    @classmethod
    def check_creatable(cls, location, overwrite=False, collection=None, index_method=None, dist_type="IP",
                        embedding_size=None):
        """Raise unless create(...) may write there; changes nothing (the builder calls it before embedding)."""
        g = cls._connect(location, collection, must_exist=False)
        try:
            if not overwrite and g._resolve() is not None:
                raise GalleryError(f"{g.index_dir}: a gallery already exists (open it to append, or use "
                                   f"index_operation: new / overwrite=True to replace it)")
            if index_method is not None:
                method = INDEX_METHODS.build(index_method, {}, where="IndexProcess", dim=embedding_size or 8,
                                             dist_type=dist_type)
                milvus_index(index_method, method, 0, g.offered, g.server)
        finally:
            g.close()

    @classmethod
    def create(cls, location, embedding_size, dist_type="IP", index_method="HNSW32", model_fingerprint=None,
               overwrite=False, vectors=None, labels=None, paths=None, boxes=None, collection=None,
               **index_params):
        """A new gallery, optionally with first contents, published (the alias moved) only once complete.
        `index_params`: ef_search, ef_construction (HNSW32), nlist, nprobe (IVF), pq_m, rerank_factor (IVFPQ)."""
        if "ids" in index_params:
            raise GalleryError("ids are not kept on Milvus: an item's id is the hash of its path")
        if not isinstance(embedding_size, int) or isinstance(embedding_size, bool) or embedding_size <= 0:
            raise GalleryError(f"embedding_size must be a positive int, got {embedding_size!r}")
        method = INDEX_METHODS.build(index_method, index_params, where="IndexProcess", dim=embedding_size,
                                     dist_type=dist_type)
        g = cls._connect(location, collection, must_exist=False)
        try:
            current = g._resolve()
            if current is not None and not overwrite:
                raise GalleryError(f"{g.index_dir}: a gallery already exists (open it to append, or use "
                                   f"index_operation: new / overwrite=True to replace it)")
            n = 0 if vectors is None else len(np.asarray(vectors))
            index_type, build, search = milvus_index(index_method, method, n, g.offered, g.server)
            now = _now()
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "embedding_size": embedding_size,
                    "dist_type": dist_type, "index_method": index_method, "index_params": method.params(),
                    "milvus_index": {"index_type": index_type, "params": build, "search_params": search},
                    "model_fingerprint": model_fingerprint, "created_at": now}
            if overwrite:
                g._drop_unpublished(current)  # what a crashed `new` left
            physical = f"{g.collection}{VERSION_SEP}{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(3)}"
            g._create_physical(physical, meta)
            try:
                g._load(physical)
                if vectors is not None:
                    g.add(vectors, labels, paths, boxes, model_fingerprint)
                    g._client.flush(physical)
                    g._wait_indexed(physical)  # readers see the gallery with its index built
                g._publish(physical, current)
            except BaseException:
                g._drop_quietly(physical)
                raise
        except BaseException:
            g.close()
            raise
        return g

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        except Exception:  # noqa: BLE001
            pass
        if is_local(self.uri):
            with _open_lite_lock:
                left = _open_lite.get(self.uri, 1) - 1
                if left <= 0:
                    _open_lite.pop(self.uri, None)
                else:
                    _open_lite[self.uri] = left
            if left <= 0:  # the last store of this file in the process: let other processes open it
                from milvus_lite.server_manager import server_manager_instance
                server_manager_instance.release_server(self.uri)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def refresh(self):
        """Follow the alias to the newest published collection (after a `new` elsewhere) and re-read the
        revision and metadata (a fingerprint set by the first add); the search parameters set on this
        object stay unless the collection changed."""
        physical = self._resolve()
        if physical is None:
            raise GalleryNotFound(f"{self.index_dir}: the gallery was removed")
        if physical != self.physical:
            self._load(physical)
        else:
            self.meta, self.version = self._read_meta(physical)
        return self

    # ------------------------------------------------------------ reading
    def __len__(self):
        rows = self._call(self._client.query, self.physical, filter="", output_fields=["count(*)"],
                          consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def _model_record(self):
        return self.meta

    @property
    def manifest(self):
        """The FAISS gallery's manifest keys that apply (count is live), plus where the gallery is."""
        return {**self.meta, "count": len(self), "backend": "milvus", "uri": self.uri,
                "collection": self.collection, "physical_collection": self.physical, "server": self.server}

    def label_counts(self):
        counts = {}
        for row in self._iterate(["label"]):
            counts[row["label"]] = counts.get(row["label"], 0) + 1
        return counts

    def records(self, ids=None):
        """[{id, label, path, box, added_at}] ordered by id (all when `ids` is None)."""
        fields = ["id", "label", "path", "box", "added_at"]
        if ids is None:
            rows = list(self._iterate(fields))
        else:
            rows = self._by_ids([int(i) for i in np.asarray(ids, np.int64).ravel()], fields)
        return sorted((self._record(r) for r in rows), key=lambda r: r["id"])

    def get_vectors(self, ids):
        """float32 [len(ids), D] of `ids` in that order (queried by primary key)."""
        ids = [int(i) for i in np.asarray(ids, np.int64).ravel()]
        found = {int(r["id"]): r["vector"] for r in self._by_ids(sorted(set(ids)), ["id", "vector"])}
        missing = [i for i in ids if i not in found]
        if missing:
            raise GalleryError(f"{self.index_dir}: no gallery item {missing[0]}")
        return np.asarray([found[i] for i in ids], np.float32).reshape(len(ids), self.embedding_size)

    def existing_paths(self, paths):
        wanted = {str(p) for p in paths if p is not None}
        return {p for p in self._present(wanted).values()}

    def set_search_params(self, ef_search=None, nprobe=None):
        """efSearch (HNSW32) / nprobe (IVF, IVFPQ) for this object's searches (the method names the Milvus
        search parameter each sets)."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is None:
                continue
            key = self.method.milvus_search_keys.get(name)
            if key is None or key not in self._search:
                raise GalleryError(f"{name} does not apply to a {self.meta['index_method']} index")
            if int(value) < 1:
                raise GalleryError(f"{name} must be >= 1, got {value!r}")
            self._search[key] = int(value)
        return self

    def search(self, vectors, k=5):
        """Top-k per query: (labels [n][k] str or None, scores float32 [n,k], ids int64 [n,k]); empty
        slots have id -1, label None and the worst score (-inf for IP, +inf for L2)."""
        try:
            return self._search_once(vectors, k)
        except _CollectionGone:
            self._follow_replacement()
            return self._search_once(vectors, k)

    def _search_once(self, vectors, k):
        q, k, ids, scores, _ = self._result_slots(vectors, k)
        labels = [[None] * k for _ in range(len(q))]
        rerank = bool(self.method.rerank_factor)   # IVFPQ: candidates re-scored exactly, as in FAISS
        fetch = self.method.candidates(k)
        params = self.method.milvus_search_params(dict(self._search), fetch)
        fields = ["label", "vector"] if rerank else ["label"]
        for start in range(0, len(q), SEARCH_BATCH):
            chunk = q[start:start + SEARCH_BATCH]
            found = self._call(self._client.search, self.physical, data=chunk, limit=fetch, output_fields=fields,
                               search_params={"metric_type": self.dist_type, "params": params},
                               consistency_level="Strong")
            for row, hits in enumerate(found):
                hits = list(hits)
                if rerank and hits:
                    hits = self._rescore(chunk[row], hits)
                for col, hit in enumerate(hits[:k]):
                    ids[start + row, col] = int(hit["id"])
                    scores[start + row, col] = float(hit["distance"])
                    labels[start + row][col] = hit["entity"]["label"]
        return labels, scores, ids

    # ------------------------------------------------------------ writing
    def add(self, vectors, labels, paths=None, boxes=None, model_fingerprint=None):
        """Add vectors with their labels (and paths, boxes); returns their ids, -1 for each skipped one (its
        path is already in the gallery, or repeated in this call). Re-running an interrupted add completes it."""
        if model_fingerprint is not None:
            self.check_model(model_fingerprint)
        v = self._as_matrix(vectors, "vectors")
        n = len(v)
        labels, paths, boxes = item_fields(n, labels, paths, boxes)
        for what, seq, limit in (("label", labels, MAX_LABEL_BYTES), ("path", paths, MAX_PATH_BYTES)):
            long = [i for i, s in enumerate(seq) if s is not None and len(s.encode("utf-8")) > limit]
            if long:
                raise GalleryError(f"add: item {long[0]}'s {what} is longer than {limit} bytes (Milvus VARCHAR "
                                   f"field)")
        empty = [i for i, p in enumerate(paths) if p == ""]
        if empty:
            raise GalleryError(f"add: item {empty[0]} has an empty path (give None for no path)")

        ids = np.full(n, -1, np.int64)
        keep, seen = [], set()
        for i, p in enumerate(paths):
            if p is None:
                ids[i] = secrets.randbits(63)
                keep.append(i)
            elif p not in seen:
                seen.add(p)
                ids[i] = path_hash(p)
                keep.append(i)
        present = self._present(seen)  # id -> path, of the paths already stored
        keep = [i for i in keep if paths[i] is None or int(ids[i]) not in present]
        skipped = np.ones(n, bool)
        skipped[keep] = False
        ids[skipped] = -1
        if not keep:
            return ids
        if self.meta["model_fingerprint"] is None and model_fingerprint is not None and len(self) == 0:
            self._set_meta(model_fingerprint=model_fingerprint)  # before the rows: a crash leaves no rows unowned
        now = _now()
        for start in range(0, len(keep), INSERT_BATCH):
            rows = [{"id": int(ids[i]), "vector": v[i], "label": labels[i], "path": paths[i] or "",
                     "box": json.dumps(boxes[i]) if boxes[i] is not None else "", "added_at": now}
                    for i in keep[start:start + INSERT_BATCH]]
            self._call(self._client.insert, self.physical, data=rows)
        self._bump()
        return ids

    def remove(self, labels=None, paths=None):
        """Remove every item with one of `labels` or one of `paths`; returns the removed ids (sorted)."""
        labels, paths = removal_targets(labels, paths)
        gone = set(self._present({str(p) for p in paths}))
        for start in range(0, len(labels), 100):
            expr = f"label in [{', '.join(_quote(lab) for lab in labels[start:start + 100])}]"
            gone |= {int(r["id"]) for r in self._iterate(["id"], expr)}
        gone = np.asarray(sorted(gone), np.int64)
        for start in range(0, len(gone), QUERY_BATCH):
            self._call(self._client.delete, self.physical, ids=[int(i) for i in gone[start:start + QUERY_BATCH]])
        if len(gone):
            self._bump()
        return gone

    def compact(self):
        """Flush and ask the server to compact (Milvus drops deleted rows from segments by itself)."""
        self._call(self._client.flush, self.physical)
        self._wait_indexed(self.physical)
        try:
            self._client.compact(self.physical)
        except Exception as e:  # noqa: BLE001 - an optional server feature
            log.warning("%s: compaction request failed (%s)", self.index_dir, e)
        self._bump()
        return len(self)

    def set_calibration(self, record):
        """Keep `record` (ppshitu/gallery/calibrate.py; None: drop it) in the gallery's metadata property as
        `calibration` (read afresh first, so another writer's fingerprint stays), and bump the revision."""
        meta = dict(self._read_meta(self.physical)[0])
        meta.pop("calibration", None)
        if record is not None:
            meta["calibration"] = dict(record)
        self.meta = {}
        self._set_meta(**meta)
        self._bump()

    # ------------------------------------------------------------ migration
    def iter_items(self, batch_size=ITER_BATCH):
        """Yield (ids int64 [b], vectors float32 [b, D], records [b]) over every item (for migrate_gallery)."""
        fields = ["id", "vector", "label", "path", "box", "added_at"]
        batch = []
        for row in self._iterate(fields, batch_size=batch_size):
            batch.append(row)
            if len(batch) == batch_size:
                yield self._batch(batch)
                batch = []
        if batch:
            yield self._batch(batch)

    def drop(self):
        """Delete the gallery: the alias and every physical collection of this name."""
        physical = self._resolve()
        if physical is not None and self._is_alias():
            self._client.drop_alias(self.collection)
        for name in self._client.list_collections():
            if name == self.collection or name.startswith(self.collection + VERSION_SEP):
                self._client.drop_collection(name)

    # ------------------------------------------------------------ internals
    def _call(self, fn, *args, **kwargs):
        try:
            with _expect_missing():
                return fn(*args, **kwargs)
        except MilvusException as e:
            if _is_missing(e) and not self._client.has_collection(self.physical):
                raise _CollectionGone(self.physical) from None
            raise GalleryError(f"{self.index_dir}: Milvus {getattr(fn, '__name__', 'call')} failed: "
                               f"{getattr(e, 'message', None) or e}") from None

    def _follow_replacement(self):
        """After a `new` elsewhere dropped the collection this object read: move to the new one, if it holds
        vectors of the same model, size and distance (else the caller's vectors mean nothing there)."""
        before = (self.physical, dict(self.meta), dict(self._search), self.version, self.method)
        self.refresh()
        try:
            self.check_model(before[1]["model_fingerprint"], before[1]["embedding_size"])
            if self.meta["dist_type"] != before[1]["dist_type"]:
                raise GalleryError(f"{self.index_dir}: the gallery was replaced by one with dist_type "
                                   f"{self.meta['dist_type']} (was {before[1]['dist_type']}); reopen it")
        except GalleryError:
            self.physical, self.meta, self._search, self.version, self.method = before  # failing until reopened
            raise
        log.info("%s: the gallery was replaced (index_operation: new); now reading %s", self.index_dir,
                 self.physical)

    def _is_alias(self):
        return self.collection in (self._client.list_aliases().get("aliases") or [])

    def _resolve(self):
        """The physical collection the gallery name points at, or None when there is no gallery."""
        if self._is_alias():
            return self._client.describe_alias(self.collection)["collection_name"]
        if self._client.has_collection(self.collection):
            return self.collection  # a plain collection of ours (e.g. renamed by hand)
        return None

    def _read_meta(self, physical):
        """(metadata, revision token or None: a gallery written before revisions) of a physical collection."""
        info = self._client.describe_collection(physical)
        properties = info.get("properties") or {}
        raw = properties.get(META_KEY) or info.get("description") or ""
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise GalleryError(f"{self.index_dir}: the collection {physical} is not a ppshitu gallery (no "
                               f"{META_KEY} property); choose another IndexProcess.collection")
        if meta.get("format_version") != FORMAT_VERSION:
            raise GalleryError(f"{self.index_dir}: unsupported gallery format version {meta.get('format_version')!r}"
                               f" (this code reads {FORMAT_VERSION})")
        return meta, (properties.get(REVISION_KEY) or None) if self._revisions else None

    def _load(self, physical):
        meta, revision = self._read_meta(physical)
        method = INDEX_METHODS.build(meta["index_method"], meta["index_params"], where=f"{self.index_dir} metadata",
                                     dim=meta["embedding_size"], dist_type=meta["dist_type"])
        self._ensure_loaded(physical)
        self.physical, self.meta, self.version, self.method = physical, meta, revision, method
        self._search = dict(meta["milvus_index"]["search_params"])

    def _ensure_loaded(self, physical):
        """Load the collection into the server's memory unless it is (a reopened Milvus Lite file starts
        with every collection released: a query would fail, and count(*) would answer 0)."""
        state = str((self._client.get_load_state(physical) or {}).get("state", ""))
        if "Loaded" in state and "NotLoad" not in state:
            return
        try:
            self._client.load_collection(physical)
        except MilvusException as e:
            raise GalleryError(f"{self.index_dir}: Milvus cannot load collection {physical}: "
                               f"{getattr(e, 'message', None) or e}") from None

    def _create_physical(self, physical, meta):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=json.dumps(meta, sort_keys=True))
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=meta["embedding_size"])
        schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL_BYTES)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
        schema.add_field("box", DataType.VARCHAR, max_length=MAX_BOX_BYTES)
        schema.add_field("added_at", DataType.VARCHAR, max_length=32)
        index = self._client.prepare_index_params()
        mi = meta["milvus_index"]
        # build params nested under "params": the form both Milvus servers and Milvus Lite 3 read
        # (Lite ignores the flattened keys pymilvus 3 sends, and would build with its defaults)
        index.add_index("vector", index_type=mi["index_type"], metric_type=meta["dist_type"],
                        params={"params": mi["params"]} if mi["params"] else {})
        try:
            self._client.create_collection(physical, schema=schema, index_params=index,
                                           properties={META_KEY: json.dumps(meta, sort_keys=True),
                                                       REVISION_KEY: secrets.token_hex(8)},
                                           consistency_level="Strong")
        except MilvusException as e:
            raise GalleryError(f"{self.index_dir}: Milvus refused the collection ({mi['index_type']} index, "
                               f"{meta['dist_type']}): {getattr(e, 'message', None) or e}") from None

    def _wait_indexed(self, physical, timeout=INDEX_WAIT_S):
        """Wait until the server has built the vector index of the flushed segments. Milvus Lite builds
        them in a background thread after flush and reports them built at once, searching brute force
        meanwhile (at 100k x 512-d: ~1 s a query call instead of ~0.35 s); embedded, its worker is waited
        for. A Milvus server reports pending_index_rows truthfully: polled. (Lite's server mode: not
        waitable from here; its first searches after a `new` are slower.)"""
        if is_local(self.uri):
            try:
                from milvus_lite.server_manager import server_manager_instance
                entry = getattr(server_manager_instance, "_servers", {}).get(self.uri)
                wait = getattr(entry[1].get_collection(physical), "_wait_for_bg", None) if entry else None
                if wait is not None:
                    wait(timeout)
            except Exception as e:  # noqa: BLE001 - an optimisation: never fail the build for it
                log.debug("%s: not waiting for Milvus Lite's index build (%s)", self.index_dir, e)
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                info = self._client.describe_index(physical, "vector") or {}
            except MilvusException:
                return
            if "Finished" in str(info.get("state", "Finished")) and not info.get("pending_index_rows"):
                return
            time.sleep(1.0)
        log.warning("%s: the index of %s is still building after %d s; publishing it anyway", self.index_dir,
                    physical, timeout)

    def _set_meta(self, **changes):
        self.meta.update(changes)
        with _alter_lock:
            self._call(self._client.alter_collection_properties, self.physical,
                       properties={META_KEY: json.dumps(self.meta, sort_keys=True)})

    def _bump(self):
        """A new revision token, after the rows it covers (a reader reads the token before the rows)."""
        if not self._revisions:
            return
        revision = secrets.token_hex(8)
        with _alter_lock:
            self._call(self._client.alter_collection_properties, self.physical, properties={REVISION_KEY: revision})
        self.version = revision

    def _publish(self, physical, previous):
        """Point the gallery name at `physical` (one alias operation), then drop what it replaced."""
        try:
            if previous is None:
                self._client.create_alias(physical, self.collection)
            elif previous == self.collection:  # a plain collection under the name: not atomic
                self._client.drop_collection(previous)
                self._client.create_alias(physical, self.collection)
            else:
                self._client.alter_alias(physical, self.collection)
        except MilvusException as e:
            text = getattr(e, "message", None) or str(e)
            raise GalleryError(f"{self.index_dir}: a gallery already exists (created meanwhile by another "
                               f"process?): {text}") from None
        if previous is not None and previous != self.collection:
            self._drop_quietly(previous)

    def _drop_unpublished(self, current):
        for name in self._client.list_collections():
            if name.startswith(self.collection + VERSION_SEP) and name != current:
                log.info("%s: dropping %s (not published: left by an interrupted or replaced build)",
                         self.index_dir, name)
                self._drop_quietly(name)

    def _drop_quietly(self, name):
        try:
            self._client.drop_collection(name)
        except Exception as e:  # noqa: BLE001
            log.warning("%s: could not drop collection %s (%s)", self.index_dir, name, e)

    def _rescore(self, query, hits):
        vecs = np.asarray([h["entity"]["vector"] for h in hits], np.float32)
        if self.higher_is_better:
            exact = vecs @ query
            order = np.argsort(-exact, kind="stable")
        else:
            exact = ((vecs - query) ** 2).sum(1)
            order = np.argsort(exact, kind="stable")
        return [{**hits[j], "distance": float(exact[j])} for j in order]

    def _present(self, paths):
        """{id: path} of the given paths that are stored (looked up by primary key)."""
        by_id = {path_hash(p): p for p in paths}
        found = {}
        for row in self._by_ids(list(by_id), ["id", "path"]):
            i = int(row["id"])
            if row["path"] == by_id[i]:
                found[i] = row["path"]
            else:
                raise GalleryError(f"{self.index_dir}: {by_id[i]!r} and the stored {row['path']!r} have the same "
                                   f"63-bit path hash ({i}); rename one of the two images")
        return found

    def _by_ids(self, ids, fields):
        rows = []
        for start in range(0, len(ids), QUERY_BATCH):
            chunk = ids[start:start + QUERY_BATCH]
            if chunk:
                rows += self._call(self._client.query, self.physical, ids=chunk, output_fields=fields,
                                   consistency_level="Strong")
        return rows

    def _iterate(self, fields, expr="", batch_size=ITER_BATCH):
        """Every row matching `expr`, in pages (a query iterator: no 16384-row limit)."""
        try:
            it = self._client.query_iterator(self.physical, batch_size=batch_size, filter=expr,
                                             output_fields=fields, consistency_level="Strong")
        except MilvusException as e:
            raise GalleryError(f"{self.index_dir}: Milvus query failed: {getattr(e, 'message', None) or e}") from None
        try:
            while True:
                page = it.next()
                if not page:
                    return
                yield from page
        finally:
            it.close()

    @staticmethod
    def _record(row):
        box = row.get("box") or ""
        return {"id": int(row["id"]), "label": row["label"], "path": row.get("path") or None,
                "box": json.loads(box) if box else None, "added_at": row.get("added_at")}

    def _batch(self, rows):
        ids = np.asarray([int(r["id"]) for r in rows], np.int64)
        vectors = np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), self.embedding_size)
        return ids, vectors, [self._record(r) for r in rows]


def drop_gallery(location, collection=None):
    """Remove a Milvus gallery (tests, tools that rebuild under the same name)."""
    g = MilvusStore._connect(location, collection, must_exist=False)
    try:
        g.drop()
    finally:
        g.close()
