"""Gallery: a FAISS index + SQLite label store + manifest, updated atomically.

    g = Gallery.create(dir, 512, dist_type="IP", index_method="HNSW32", model_fingerprint=fp)
    ids = g.add(vectors, labels, paths)        # -1 where a path was already in the gallery
    labels, scores, ids = g.search(queries, k=5)
    g.remove(labels=["cat"]); g.compact()

A Gallery object is a snapshot of one published version (see layout.py); every
update writes a complete new version and then publishes it, so other processes
keep answering from the version they opened until they call refresh().

Integrity (format_version 2): a version's manifest records the sha256 of each of its files
(`checksums`) and of its own content (`manifest_sha256`); opening a version checks them all
before anything is parsed, and an update checks the files it builds on under the writer lock,
so a damaged or hand-edited version is refused with the damaged file named, never read as
data (an IP gallery read as L2, NaN rows compacted into a new index). Galleries written
before checksums existed (format_version 1) still open, unchecked; their next update writes
a checked version.
"""
import errno
import os
import re
import shutil
import sqlite3
import threading
import time
import warnings

import faiss
import numpy as np

from . import layout, search_tuning, store
from ..errors import ConfigError
from .errors import GalleryError, GalleryWriteError
from .indexes import AUTO, INDEX_METHODS, auto_method
from .interface import GalleryStore, item_fields, removal_targets

FORMAT = "ppshitu-gallery"
FORMAT_VERSION = 2          # 2: checksums; versions written by this code
READABLE_VERSIONS = (1, 2)  # 1: before checksums (opened without them)
# np.load parses each .npy header with ast.literal_eval, and CPython 3.11's parser is not safe on
# two threads at once (gh-106905: "AST constructor recursion depth mismatch"): readers opening
# versions on several threads take turns for the header.
_NPY_HEADER_LOCK = threading.Lock()
FILES = {"index": "index.faiss", "vectors": "vectors.npy", "ids": "ids.npy",
         "meta": "meta.sqlite", "manifest": "manifest.json"}
# A query path runs Paddle (Intel OpenMP, whose threads spin ~200 ms after each run) and then
# FAISS (GNU OpenMP): a few queries searched on FAISS threads fight those spinning threads for
# the cores (19 ms instead of 1-2 ms for 6 queries on an HNSW gallery, 2 cores). Few queries
# gain nothing from threads anyway, so they are searched on the calling thread.
SINGLE_THREAD_QUERIES = 64


def _faiss_search(index, q, k, params):
    if len(q) >= SINGLE_THREAD_QUERIES:
        return index.search(q, k, params=params)
    before = faiss.omp_get_max_threads()  # OpenMP keeps this per calling thread
    faiss.omp_set_num_threads(1)
    try:
        return index.search(q, k, params=params)
    finally:
        faiss.omp_set_num_threads(before)


MANIFEST_SHA = "manifest_sha256"
COMPACT_TOMBSTONE_RATIO = 0.25  # past this share of removed-but-indexed ids, filtering costs recall: rebuild


class Gallery(GalleryStore):
    """The "faiss" store (gallery/base.py's STORES): a directory of atomically published versions."""
    chooses_auto = True  # index_method "auto": chosen (and re-chosen as the gallery grows) in create / updates
    tunes_search = True  # ef_search / nprobe tuned on its own vectors to IndexProcess.tune_recall (search_tuning.py)
    # ------------------------------------------------------------ lifecycle
    def __init__(self, index_dir):
        """Use Gallery.open() or Gallery.create()."""
        self.index_dir = os.fspath(index_dir)
        self._lock = threading.Lock()
        self._con = None
        self._search_override = None  # (knob, value) from set_search_params: this object's searches only

    @classmethod
    def open(cls, index_dir, model_fingerprint=None, embedding_size=None):
        """Open the current version; with a model's fingerprint/embedding size, check they match."""
        g = cls(index_dir)
        for attempt in range(3):
            name = layout.current_version(g.index_dir)
            try:
                g._load(name)
                break
            except GalleryError:
                # an update may have published and garbage-collected our version meanwhile;
                # a version that is still current when it fails is damaged: no retry
                time.sleep(0.02)
                if attempt == 2 or not os.path.isdir(g.index_dir) or layout.current_version(g.index_dir) == name:
                    raise
        if model_fingerprint is not None or embedding_size is not None:
            g.check_model(model_fingerprint, embedding_size)
        return g

    @classmethod
    def create(cls, index_dir, embedding_size, dist_type="IP", index_method="HNSW32",
               model_fingerprint=None, overwrite=False, vectors=None, labels=None, paths=None,
               boxes=None, ids=None, tune_recall=None, **index_params):
        """A new gallery, optionally filled with a first set of vectors in the same atomic step.
        `overwrite=True` replaces an existing gallery (atomically: the old one stays current until
        the new one is complete). `ids`: keep existing ids (imports); by default 0, 1, 2, ...
        `index_params`: ef_search, nprobe, nlist, ... (see index_methods.py); an explicit ef_search / nprobe
        is kept as it is ("override"), else the gallery tunes it on its own vectors (search_tuning.py) to reach
        recall@1 `tune_recall` (None: search_tuning.TARGET_RECALL), kept in the manifest for later re-tunings.
        `index_method` "auto": Flat below indexes.FLAT_BELOW vectors, IVFSQ8 from there, IVFPQFS from
        indexes.LARGE_FROM (re-chosen as it grows: indexes.auto_method)."""
        if not isinstance(embedding_size, int) or embedding_size <= 0:
            raise GalleryError(f"embedding_size must be a positive int, got {embedding_size!r}")
        if tune_recall is not None:
            tune_recall = search_tuning.check_target(tune_recall)
        requested = index_method
        if index_method == AUTO:
            index_method = auto_method(0 if vectors is None else len(vectors))
        method = _build_method(index_method, index_params, embedding_size, dist_type)
        g = cls(index_dir)
        cls.check_creatable(g.index_dir, overwrite)  # before the lock: a refused directory gets no LOCK file
        with layout.writer_lock(g.index_dir):
            cls.check_creatable(g.index_dir, overwrite)  # again: another writer may have been first
            now = _now()
            g.manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "embedding_size": embedding_size,
                "dist_type": dist_type, "index_method": index_method, "index_params": method.params(),
                "model_fingerprint": model_fingerprint, "next_id": 0, "trained_on": 0,
                "count": 0, "created_at": now, "updated_at": now}
            if tune_recall is not None:
                g.manifest["tune_recall"] = tune_recall
            if requested == AUTO:
                g.manifest["index_method_requested"] = AUTO
                g.manifest["auto_index_params"] = dict(index_params)  # for the method chosen as it grows
            knob = search_tuning.tunable_param(method)
            if knob and index_params.get(knob) is not None:
                g.manifest["search_tuning"] = {"param": knob, "value": int(index_params[knob]), "origin": "override"}
            g.method, g.index, g.version = method, None, None
            g._search_override = None
            g.ids = np.zeros(0, np.int64)
            g.vectors = np.zeros((0, embedding_size), np.float32)
            g.tombstones = np.zeros(0, np.int64)
            g._selector = None

            def fill(con):
                if vectors is not None:
                    return g._add_locked(con, vectors, labels, paths, boxes, model_fingerprint, ids)
                return None
            g._write_version(fill, base_meta=None)
        return g

    @classmethod
    def location_of(cls, index_process):
        """(IndexProcess.index_dir, no options)."""
        if not index_process.get("index_dir"):
            raise ConfigError("IndexProcess.index_dir is required (the gallery's directory)")
        return index_process["index_dir"], {}

    @classmethod
    def exists(cls, index_dir):
        return layout.is_gallery(index_dir)

    @staticmethod
    def check_creatable(index_dir, overwrite=False, index_method=None):
        """Raise GalleryError unless create(index_dir, overwrite=...) may write there; changes nothing
        (`index_method`: every registered method builds on FAISS)."""
        index_dir = os.fspath(index_dir)
        if layout.is_gallery(index_dir):
            if not overwrite:
                raise GalleryError(f"{index_dir}: a gallery already exists (open it to append, "
                                   f"or use index_operation: new / overwrite=True to replace it)")
        elif os.path.exists(index_dir) and not os.path.isdir(index_dir):
            raise GalleryError(f"{index_dir}: a file, not a directory; choose an empty or new index_dir")
        elif os.path.isdir(index_dir) and set(os.listdir(index_dir)) - layout.WRITER_FILES:
            # (LOCK, versions/, .CURRENT.tmp alone: what a writer killed during the first create left)
            raise GalleryError(f"{index_dir}: not empty and not a gallery; choose an empty or new index_dir")

    def refresh(self):
        """Switch to the newest published version (another process may have updated it)."""
        name = layout.current_version(self.index_dir)
        if name != self.version:
            self._load(name)
        return self

    def close(self):
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ queries
    def __len__(self):
        return len(self.ids)

    def _model_record(self):
        return self.manifest

    def label_counts(self):
        with self._lock:
            return store.label_counts(self._con)

    def records(self, ids=None):
        """Rows {id, label, path, box, added_at}, ordered by id."""
        with self._lock:
            return store.records(self._con, ids)

    def get_vectors(self, ids):
        """float32 [len(ids), D] of `ids` in that order, from this version's kept raw vectors."""
        ids = np.asarray(ids, np.int64).ravel()
        have, vectors = self.ids, self.vectors
        rows = np.minimum(np.searchsorted(have, ids), max(len(have) - 1, 0))  # (rows are sorted by id)
        missing = ids[have[rows] != ids] if len(have) else ids
        if len(missing):
            raise GalleryError(f"{self.index_dir}: no gallery item {int(missing[0])} (version {self.version})")
        return np.array(vectors[rows], np.float32).reshape(len(ids), self.embedding_size)

    def existing_paths(self, paths):
        """The subset of `paths` already in the gallery."""
        with self._lock:
            return store.existing_paths(self._con, [str(p) for p in paths])

    def iter_items(self, batch_size=8192):
        """Yield (ids int64 [b], vectors float32 [b, D], records [b]) over every item, in id order."""
        records = self.records()
        if [r["id"] for r in records] != self.ids.tolist():  # rows of the raw vectors are in id order
            raise GalleryError(f"{self.index_dir}: its records and vectors disagree; run compact or rebuild it")
        for start in range(0, len(records), batch_size):
            stop = start + batch_size
            yield self.ids[start:stop], np.asarray(self.vectors[start:stop], np.float32), records[start:stop]

    def set_search_params(self, ef_search=None, nprobe=None):
        """Tune HNSW efSearch / IVF nprobe for this object's searches (the manifest keeps its own)."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None:
                if not hasattr(self.method, name):
                    raise GalleryError(f"{name} does not apply to a {self.manifest['index_method']} index")
                if int(value) < 1:
                    raise GalleryError(f"{name} must be >= 1, got {value!r}")
                setattr(self.method, name, int(value))
                self._search_override = (name, int(value))
        return self

    def search_setting(self):
        """{"param", "value", "origin", "record"} of this object's searches: origin "override" (set_search_params,
        e.g. -o IndexProcess.ef_search=N; or a value given at build), "tuned" (measured on the gallery's own
        vectors, search_tuning.py) or "default" (a gallery written before tuning existed); None for exact
        search (Flat)."""
        knob = search_tuning.tunable_param(self.method)
        if knob is None:
            return None
        record = self.manifest.get("search_tuning")
        if self._search_override is not None:
            return {"param": knob, "value": self._search_override[1], "origin": "override", "record": record}
        value = getattr(self.method, knob)
        if knob == "nprobe" and self.index is not None:
            value = self.method.probes(faiss.extract_index_ivf(self.index).nlist)
        return {"param": knob, "value": int(value), "origin": record["origin"] if record else "default",
                "record": record}

    def search(self, vectors, k=5):
        """Top-k per query: (labels [n][k] str or None, scores float32 [n,k], ids int64 [n,k]).
        Empty slots (fewer than k items) have id -1, label None and the worst possible score."""
        q, k, ids, scores, worst = self._result_slots(vectors, k)
        if len(self) and len(q):
            found_d, found_i = self._top(q, k)
            kk = min(k, found_i.shape[1])
            ids[:, :kk], scores[:, :kk] = found_i[:, :kk], found_d[:, :kk]
            scores[ids < 0] = worst
        with self._lock:
            names = store.labels_of(self._con, np.unique(ids[ids >= 0]))
        labels = [[names.get(int(i)) for i in row] for row in ids]
        return labels, scores, ids

    # ------------------------------------------------------------ updates
    def add(self, vectors, labels, paths=None, boxes=None, model_fingerprint=None, tune_recall=None):
        """Add vectors with their labels; returns their new ids, -1 for each skipped one
        (its path is already in the gallery, or repeated in this call). Atomic. `tune_recall`: a new
        recall@1 target for the tuned search setting (kept in the manifest; another value than the stored
        one re-tunes in this update)."""
        if model_fingerprint is not None:
            self.check_model(model_fingerprint)  # early, and again under the lock (see _update)
        if tune_recall is not None:
            tune_recall = search_tuning.check_target(tune_recall)

        def change(con):
            if tune_recall is not None:
                self.manifest["tune_recall"] = tune_recall
            return self._add_locked(con, vectors, labels, paths, boxes, model_fingerprint)
        return self._update(change, model_fingerprint=model_fingerprint)

    def remove(self, labels=None, paths=None):
        """Remove every item with one of `labels` or one of `paths`; returns the removed ids. Atomic."""
        labels, paths = removal_targets(labels, paths)
        return self._update(lambda con: self._remove_locked(con, labels, paths))

    def compact(self):
        """Rebuild (and retrain) the index from the kept vectors, dropping filtered-out ids. Atomic."""
        return self._update(self._rebuild_locked)

    def relabel(self, old, new, model_fingerprint=None):
        """Move every item of label `old` to label `new` (merged into it when it exists), with the same
        vectors, paths and boxes, in ONE update: readers see all of `old` or all of `new`, never
        neither. Returns (removed ids, their new ids in the same order). Atomic."""
        def change(con):
            recs = [r for r in store.records(con) if r["label"] == old]
            if not recs:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            vectors = self.get_vectors([r["id"] for r in recs])
            removed = self._remove_locked(con, [old], [])
            new_ids = self._add_locked(con, vectors, new, [r["path"] for r in recs], [r["box"] for r in recs],
                                       model_fingerprint)
            return removed, new_ids
        return self._update(change, model_fingerprint=model_fingerprint)

    def set_calibration(self, record):
        """Keep `record` (a JSON object, ppshitu/gallery/calibrate.py; None: drop it) as the manifest's
        `calibration`, in a new version with the same items. Atomic; later versions carry it on."""
        def change(con):
            self.manifest.pop("calibration", None)
            if record is not None:
                self.manifest["calibration"] = dict(record)
        return self._update(change)

    # ------------------------------------------------------------ internals
    def _top(self, q, k):
        """(scores, ids) of the index's best k per query, rescored where the method rescores."""
        fetch = min(self.method.candidates(k), self.index.ntotal)
        params = self.method.search_params(self.index, self._selector)
        found_d, found_i = _faiss_search(self.index, q, fetch, params)
        if self.method.rerank_factor:
            found_d, found_i = self._rescore(q, found_i)
        return found_d, found_i

    def _retune_locked(self, con):
        """Re-choose an `auto` gallery's method for its size, then tune ef_search / nprobe on the gallery's
        own vectors when it is new or grew by search_tuning.RETUNE_GROWTH since the last tuning."""
        count = len(self.ids)
        if self.manifest.get("index_method_requested") == AUTO:
            wanted = auto_method(count, self.manifest["index_method"])
            if wanted != self.manifest["index_method"] and count:
                self.method = _build_method(wanted, self.manifest.get("auto_index_params") or {},
                                            self.embedding_size, self.dist_type)
                self.manifest.update(index_method=wanted, index_params=self.method.params())
                self._rebuild_locked(con)
        if self.index is None or not search_tuning.needs_tuning(self.manifest, count, self.method):
            return
        knob = search_tuning.tunable_param(self.method)
        before = getattr(self.method, knob)
        limit = faiss.extract_index_ivf(self.index).nlist if knob == "nprobe" else None
        names = store.labels_of(con, self.ids)
        labels = [names.get(int(i)) for i in self.ids]

        def top2(queries, value):
            setattr(self.method, knob, value)
            return self._top(queries, 2)
        try:
            record = search_tuning.tune(top2, self.vectors, self.ids, labels, self.higher_is_better, knob, limit,
                                        target=search_tuning.target_of(self.manifest))
        finally:
            setattr(self.method, knob, before)
        setattr(self.method, knob, record["value"])
        self.manifest["search_tuning"] = record
        self.manifest["index_params"] = self.method.params()

    def _rescore(self, q, cand):
        """Exact scores of candidate ids from the raw vectors; sorted best first."""
        rows = np.searchsorted(self.ids, np.where(cand >= 0, cand, 0))
        rows = np.minimum(rows, len(self.ids) - 1)
        valid = (cand >= 0) & (self.ids[rows] == cand)
        cvec = np.asarray(self.vectors[rows.ravel()]).reshape(*cand.shape, -1)
        if self.higher_is_better:
            d = np.einsum("nkd,nd->nk", cvec, q)
            d[~valid] = -np.inf
            order = np.argsort(-d, axis=1, kind="stable")
        else:
            d = ((cvec - q[:, None, :]) ** 2).sum(-1)
            d[~valid] = np.inf
            order = np.argsort(d, axis=1, kind="stable")
        cand = np.where(valid, cand, -1)
        return np.take_along_axis(d, order, 1).astype(np.float32), np.take_along_axis(cand, order, 1)

    def _update(self, change, model_fingerprint=None):
        with layout.writer_lock(self.index_dir):
            current = layout.current_version(self.index_dir)
            if current != self.version:
                self._load(current)  # don't overwrite another writer's update (checks its files)
            else:
                self._verify_files(self._vdir(self.version), self.manifest, skip=(FILES["index"],))
                # (the index in memory was checked when it was read; the files are copied or read now)
            if model_fingerprint is not None:
                # the version found under the lock may come from another model (a racing `new`)
                self.check_model(model_fingerprint)
            return self._write_version(change, base_meta=os.path.join(self._vdir(self.version), FILES["meta"]))

    def _write_version(self, change, base_meta):
        """Apply `change(con)` to a copy of the state and publish it as a new version (lock held)."""
        if layout.is_gallery(self.index_dir):
            layout.collect_garbage(self.index_dir)  # first, what a killed writer left behind
        tmp = layout.new_version_tmpdir(self.index_dir)
        old = (self.manifest.copy(), self.index, self.ids, self.vectors, self.tombstones, self.version)
        try:
            meta = os.path.join(tmp, FILES["meta"])
            if base_meta:
                shutil.copyfile(base_meta, meta)
            con = store.open_writable(meta)
            try:
                result = change(con)
                if (self.method.retrain_growth and self.manifest["trained_on"]
                        and self.method.nlist is None
                        and len(self.ids) > self.method.retrain_growth * self.manifest["trained_on"]):
                    self._rebuild_locked(con)  # an IVF trained on a small start outgrows its lists
                elif len(self.tombstones) > COMPACT_TOMBSTONE_RATIO * max(1, self.index.ntotal if self.index else 0):
                    self._rebuild_locked(con)
                self._retune_locked(con)
            finally:
                con.close()
            self.manifest.update(count=len(self.ids), updated_at=_now())
            self._save(tmp)
            name = layout.publish(self.index_dir, tmp)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            # the in-memory index may be half-updated: go back to the published state
            (self.manifest, self.index, self.ids, self.vectors, self.tombstones, self.version) = old
            if self.version is not None:
                self._load(self.version)
            if isinstance(e, (OSError, sqlite3.OperationalError)):  # disk full, a quota, permissions ...
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
                raise GalleryWriteError(
                    f"{self.index_dir}: could not write a new gallery version ({reason}); the gallery is unchanged "
                    f"(still version {self.version or 'none'}): free some space or fix the directory, then retry",
                    getattr(e, "errno", None)) from None
            raise
        self._load(name, keep_index=True)
        layout.collect_garbage(self.index_dir)
        return result

    def _add_locked(self, con, vectors, labels, paths, boxes, model_fingerprint, ids=None):
        v = self._as_matrix(vectors, "vectors")
        n = len(v)
        labels, paths, boxes = item_fields(n, labels, paths, boxes)
        if self.manifest["model_fingerprint"] is None and model_fingerprint is not None and len(self) == 0:
            self.manifest["model_fingerprint"] = model_fingerprint

        seen = store.existing_paths(con, paths)
        keep = []
        for i, p in enumerate(paths):
            if p is None or p not in seen:
                keep.append(i)
                if p is not None:
                    seen.add(p)
        new_ids = np.full(n, -1, np.int64)
        if not keep:
            return new_ids
        start = self.manifest["next_id"]
        fresh = np.arange(start, start + len(keep), dtype=np.int64)
        if ids is not None:
            fresh = np.asarray(ids, np.int64)[keep]
            if len(np.unique(fresh)) != len(fresh) or (len(fresh) and fresh.min() < start):
                raise GalleryError(f"add: ids must be unique and >= {start}")
        order = np.argsort(fresh, kind="stable")  # rows stay sorted by id (rescoring looks them up)
        keep, fresh = [keep[i] for i in order], fresh[order]
        new_ids[keep] = fresh
        kv = v[keep]
        if self.index is None:
            self.index = self.method.create(kv)
            self.manifest["trained_on"] = len(kv)
        self.index.add_with_ids(kv, fresh)
        self.ids = np.concatenate([self.ids, fresh])
        self.vectors = np.concatenate([np.asarray(self.vectors), kv])
        self.manifest["next_id"] = int(fresh.max()) + 1
        store.insert_items(con, fresh, [labels[i] for i in keep], [paths[i] for i in keep],
                           [boxes[i] for i in keep])
        return new_ids

    def _remove_locked(self, con, labels, paths):
        gone = sorted(set(store.ids_where(con, "label", labels)) | set(store.ids_where(con, "path", paths)))
        gone = np.asarray(gone, np.int64)
        if not len(gone):
            return gone
        store.delete_items(con, gone, tombstone=not self.method.can_remove)
        if self.method.can_remove:
            self.index.remove_ids(gone)
        else:
            self.tombstones = np.union1d(self.tombstones, gone)
        keep = ~np.isin(self.ids, gone)
        self.ids, self.vectors = self.ids[keep], np.asarray(self.vectors)[keep]
        return gone

    def _rebuild_locked(self, con):
        vectors = np.ascontiguousarray(np.asarray(self.vectors))
        if not np.isfinite(vectors).all():
            raise GalleryError(f"{self._vdir(self.version)}/{FILES['vectors']}: damaged gallery version "
                               f"(NaN or infinite vectors); the index is not rebuilt from them")
        self.index = self.method.create(vectors) if len(vectors) else None
        if self.index is not None:
            self.index.add_with_ids(vectors, self.ids)
        self.manifest["trained_on"] = len(vectors)
        self.tombstones = np.zeros(0, np.int64)
        store.clear_tombstones(con)
        return len(vectors)

    def _save(self, tmp):
        """Write the version's files into `tmp`, the manifest last with every file's sha256 and its own."""
        if self.index is not None:
            _write_index(self.index, os.path.join(tmp, FILES["index"]))
        np.save(os.path.join(tmp, FILES["vectors"]), np.asarray(self.vectors))
        np.save(os.path.join(tmp, FILES["ids"]), self.ids)
        self.manifest.pop(MANIFEST_SHA, None)
        self.manifest["format_version"] = FORMAT_VERSION  # a format-1 gallery's next version is checked
        self.manifest["checksums"] = {name: layout.sha256_file(os.path.join(tmp, name))
                                      for name in sorted(os.listdir(tmp)) if name != FILES["manifest"]}
        self.manifest[MANIFEST_SHA] = layout.content_sha256(self.manifest, without=(MANIFEST_SHA,))
        layout.write_json(os.path.join(tmp, FILES["manifest"]), self.manifest)

    def _vdir(self, name):
        return layout.version_dir(self.index_dir, name)

    def _verify_manifest(self, vdir, manifest):
        """Refuse a manifest that is not ours or whose content changed after it was written."""
        where = os.path.join(vdir, FILES["manifest"])
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
                or manifest.get("format_version") not in READABLE_VERSIONS:
            got = manifest.get("format_version") if isinstance(manifest, dict) else None
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise GalleryError(f"{where}: unsupported gallery format {fmt!r} version {got!r} (this code "
                               f"reads {FORMAT} {list(READABLE_VERSIONS)}), or a damaged manifest")
        if manifest["format_version"] < 2:
            return  # written before checksums existed: opened as it is, unchecked
        try:
            intact = manifest.get(MANIFEST_SHA) == layout.content_sha256(manifest, without=(MANIFEST_SHA,))
        except (TypeError, ValueError):
            intact = False
        if not intact or not isinstance(manifest.get("checksums"), dict):
            raise GalleryError(f"{where}: damaged gallery version (the manifest's content does not match its "
                               f"{MANIFEST_SHA}: it was edited or damaged after it was written); restore the "
                               f"gallery from a backup or rebuild it (tools/build_gallery.py, index_operation: new)")
        missing = [f for f in (FILES["vectors"], FILES["ids"], FILES["meta"]) if f not in manifest["checksums"]]
        if missing:
            raise GalleryError(f"{where}: damaged gallery version (no checksum for {missing})")

    def _verify_files(self, vdir, manifest, skip=()):
        """Each file's sha256 against the manifest's, before anything is parsed (format 2)."""
        if manifest["format_version"] < 2:
            return
        on_disk = set(os.listdir(vdir)) if os.path.isdir(vdir) else set()
        if FILES["index"] in on_disk and FILES["index"] not in manifest["checksums"]:
            raise GalleryError(f"{vdir}/{FILES['index']}: damaged gallery version (a file the manifest does "
                               f"not list)")
        for name, digest in manifest["checksums"].items():
            if name in skip:
                continue
            path = os.path.join(vdir, name)
            try:
                actual = layout.sha256_file(path) if name in on_disk else None
            except OSError as e:  # e.g. removed meanwhile by a writer's garbage collection: open() retries
                raise GalleryError(f"{path}: cannot read it ({e.strerror or e})") from None
            if actual is None:
                raise GalleryError(f"{path}: damaged gallery version (the file is missing)")
            if actual != digest:
                raise GalleryError(f"{path}: damaged gallery version (its sha256 does not match the manifest: "
                                   f"the file changed after the gallery wrote it); restore the gallery from a "
                                   f"backup or rebuild it (tools/build_gallery.py, index_operation: new)")

    def _load(self, name, keep_index=False):
        """Read version `name`, checking its checksums first; `keep_index` (right after this
        object wrote the version) reuses the in-memory index and skips the checks."""
        vdir = self._vdir(name)
        if not os.path.isdir(vdir):
            raise GalleryError(f"{os.path.join(self.index_dir, layout.CURRENT)} names version {name}, but "
                               f"{vdir} does not exist (damaged CURRENT, or a gallery directory copied in part)")
        manifest = layout.read_json(os.path.join(vdir, FILES["manifest"]))
        self._verify_manifest(vdir, manifest)
        if not keep_index:
            self._verify_files(vdir, manifest)
        method = INDEX_METHODS.build(manifest["index_method"], manifest["index_params"],
                                     where=f"{vdir}/manifest.json", dim=manifest["embedding_size"],
                                     dist_type=manifest["dist_type"])
        try:
            with _NPY_HEADER_LOCK:
                ids = np.load(os.path.join(vdir, FILES["ids"]))
                vectors = np.load(os.path.join(vdir, FILES["vectors"]), mmap_mode="r")
            index_path = os.path.join(vdir, FILES["index"])
            if keep_index:
                index = self.index
            else:
                index = faiss.read_index(index_path) if os.path.exists(index_path) else None
        except (OSError, ValueError, RuntimeError) as e:
            raise GalleryError(f"{vdir}: damaged gallery version ({str(e).splitlines()[0]})") from None
        con = store.open_readonly(os.path.join(vdir, FILES["meta"]))
        tomb = np.asarray(store.tombstones(con), np.int64)
        indexed = index.ntotal if index is not None else 0
        if len(ids) != manifest["count"] or vectors.shape != (len(ids), manifest["embedding_size"]) \
                or indexed != len(ids) + len(tomb) or store.count(con) != len(ids):
            con.close()
            raise GalleryError(f"{vdir}: damaged gallery version (manifest count {manifest['count']}, "
                               f"{len(ids)} ids, {vectors.shape[0]} vectors, {indexed} indexed, "
                               f"{len(tomb)} removed)")
        self.close()
        self.version, self.manifest, self.method, self.index = name, manifest, method, index
        if self._search_override is not None:
            if hasattr(method, self._search_override[0]):
                setattr(method, *self._search_override)  # set_search_params holds across refresh()
            else:
                self._search_override = None  # (an auto gallery switched to Flat meanwhile)
        self.ids, self.vectors, self.tombstones, self._con = ids, vectors, tomb, con
        # FAISS selectors hold raw pointers to each other: keep the inner one alive too
        self._tomb_batch = faiss.IDSelectorBatch(tomb) if len(tomb) else None
        self._selector = faiss.IDSelectorNot(self._tomb_batch) if len(tomb) else None


def _build_method(name, params, dim, dist_type):
    return INDEX_METHODS.build(name, params, where="IndexProcess", dim=dim, dist_type=dist_type)


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


_WRITE_ERRNO = re.compile(r"\((?P<why>[^()]*)\)\s*$")


def _write_index(index, path):
    """faiss.write_index; a failed write (FAISS raises RuntimeError: '... write error in PATH: 60664 !=
    73728 (File too large)') becomes the OSError it is, with the system's reason."""
    try:
        faiss.write_index(index, path)
    except RuntimeError as e:
        if "write error" not in str(e) and "could not open" not in str(e):
            raise
        last = str(e).strip().splitlines()[-1]
        m = _WRITE_ERRNO.search(last)
        why = m.group("why") if m else "write error"
        known = {os.strerror(c): c for c in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS)}
        raise OSError(known.get(why, errno.EIO), why, path) from None


def warn_if_unknown_model(gallery):
    if gallery.model_fingerprint is None:
        warnings.warn(f"{gallery.index_dir}: the model that made this gallery's vectors is unknown "
                      f"(e.g. imported from PP-ShiTu); make sure queries use the same model")
