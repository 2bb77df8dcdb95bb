"""The service behind the HTTP routes: who owns what, on which thread.

    inference threads (ThreadOwner "inference", Settings.workers of them)
        each builds and alone runs its RecognitionSystem (detector + recognition predictors + a
        gallery store); before every job it refreshes the store, so it answers from what was last
        published, whoever published it (this service, tools/build_gallery.py, ...)
    writer thread (ThreadOwner "writer", one)
        owns the store object that updates (add / remove / rename / compact) and the upload folder
    catalog (any thread, one lock)
        a third store object for the read routes (health, labels, items, thumbnails), refreshed
        the same way on every call, so reads answer while inference is saturated

The gallery is the IndexProcess section's (`backend`; `index_dir`, or milvus's `uri` + `collection`),
each object opened by base.open_gallery, and only the store interface is used. FAISS: each object
answers from the version it opened (re-reading CURRENT, one 9-byte file, to move on); three objects
mean three copies of the index in memory (the raw vectors are memory-mapped, shared); updates are
serialized with every other process by the gallery's writer lock (LOCK). Milvus: every write is
visible at once (a refresh re-reads the revision); writes from several processes need no lock,
since an append is idempotent by path (and an upload's path is its content's hash).
"""
import asyncio
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool

from ..errors import ConfigError
from ..gallery import GalleryError
from ..embedder import Embedder
from ..gallery.base import gallery_exists, gallery_location, open_gallery
from ..gallery.model_id import model_fingerprint, text_fingerprint
from ..system import RecognitionSystem
from ..utils.text import label_problem, nfc
from ..utils.image import (IMAGE_EXTENSIONS, MIN_IMAGE_SIDE, ImageReadError, ImageTooLargeError, decode_image,
                           read_image)
from .errors import Conflict, NotFound, ServiceError
from .settings import Settings
from .workers import ThreadOwner

log = logging.getLogger("ppshitu.serving")
MAX_LABEL_CHARS = 200
RESERVED_LABELS = ("unknown",)  # what the system answers for "no match": a class of that name would lie
EMBED_CHUNK = 8          # images decoded and embedded together when adding to the gallery
# The upload folder's own files: <2 hex>/<sha256 hex><extension> (upload_path; the first two hex digits
# are its folder's name) and the temporary files _store writes them through (tempfile's 8 characters).
UPLOAD_EXTENSIONS = (".jpg", ".png", ".bmp", ".tif", ".webp", ".img")
_UPLOAD_NAME = re.compile(r"^([0-9a-f]{2})[0-9a-f]{62}(" + "|".join(re.escape(e) for e in UPLOAD_EXTENSIONS) + r")$")
_UPLOAD_TEMP = re.compile(r"^\.upload-[a-z0-9_]{8}$")
# POST /api/compact leaves an unreferenced upload alone while it is this recent (s): another server on the
# same folder may have stored it and not yet published the item naming it (_store refreshes the mtime of
# a file it reuses, so a reused file counts as recent too)
RECLAIM_GRACE_S = 600


def _refresh(gallery, attempts=3):
    """Move to the newest published version; a version garbage-collected while we opened it is
    retried; a damaged one leaves us on the previous version (and says so)."""
    for attempt in range(attempts):
        try:
            gallery.refresh()
            return None
        except GalleryError as e:
            if attempt == attempts - 1:
                return str(e)
            time.sleep(0.02)


class Recognizer:
    """One inference thread's state: its own system (predictors + gallery; its results name each
    match's gallery item) and the embedder of the images added through the API and of search queries
    (the system's models: the main object with IndexProcess.use_det, as tools/build_gallery.py embeds)."""

    def __init__(self, system, use_det=False, min_crop_std=0.0, min_side=MIN_IMAGE_SIDE, make_text=None):
        self.system = system
        self.make_text, self.text = make_text, None  # the text encoder, loaded by the first text query
        self.gallery = system.gallery
        self.use_det = bool(use_det)
        self.embedder = Embedder(system.rec, system.det, min_side=int(min_side), min_crop_std=float(min_crop_std))
        self.fingerprint = model_fingerprint(system.rec)
        self.embedding_size = system.rec.embedding_size
        self.stale = None

    def before_job(self):
        self.stale = _refresh(self.gallery)
        if self.stale:
            log.warning("gallery refresh failed, answering from version %s: %s", self.gallery.version, self.stale)
        # another process may have replaced the gallery with one from another model: refuse, don't mix
        self.gallery.check_model(self.fingerprint, self.embedding_size)

    def predict(self, rgb):
        return {"results": self.system.predict(rgb), "version": self.gallery.version, "count": len(self.gallery)}

    def search(self, rgb, k, whole=False):
        """The gallery items nearest to the image's main object (`whole`: the whole image)."""
        vector, box = self.embedder.embed_query(rgb, detect=not whole)
        return {"box": box, **self._nearest(vector, k, self.system.search_vectors)}

    def search_text(self, text, k):
        """The gallery items nearest to the sentence `text`, by the text encoder of the model that made the
        gallery's vectors (GalleryError when the model has none, or another model made them)."""
        from ..gallery.model_id import check_text_queries

        check_text_queries(self.gallery.model_fingerprint, self.fingerprint, "gallery")
        if self.text is None:
            self.text = (self.make_text or _default_text_model)(self.system.rec)
        out = self.text.embed([text])
        info = {"truncated": bool(out.truncated[0]), "tokens": int(out.counts[0]),
                "context_length": out.context_length}
        return {"box": None, "text": info, **self._nearest(out.vectors, k)}

    def _nearest(self, vectors, k, search=None):
        labels, scores, ids = (search or self.gallery.search)(vectors, k)
        hits = [{"id": int(i), "label": lab, "score": round(float(s), 6)}
                for lab, s, i in zip(labels[0], scores[0], ids[0]) if i >= 0 and lab is not None]
        return {"results": hits, "higher_is_better": self.gallery.higher_is_better, "version": self.gallery.version}

    def embed(self, images):
        """[(name, rgb)] -> Embedded (vectors, boxes, kept positions `index`, `refused` {position: why})."""
        return self.embedder.embed_images(images, detect=self.use_det)


# ---------------------------------------------------------------- writes
def _default_text_model(rec):
    from ..infer.text import TextPredictor

    return TextPredictor(rec.model_dir)


def check_label(label):
    """The label as the gallery keeps it: stripped, NFC (utils/text.nfc: one spelling per class, as gallery
    lists and folder labels); ServiceError (400) naming what is wrong."""
    if not isinstance(label, str):
        raise ServiceError("label: a text value is required")
    label = nfc(label.strip())
    if not label:
        raise ServiceError("label: must not be empty")
    if len(label) > MAX_LABEL_CHARS:
        raise ServiceError(f"label: at most {MAX_LABEL_CHARS} characters, got {len(label)}")
    problem = label_problem(label)
    if problem:
        raise ServiceError("label: " + problem)
    if label.lower() in RESERVED_LABELS:
        raise ServiceError(f"label: {label!r} is what the service answers for objects it does not know; "
                           f"choose another name")
    return label


def held_label(label, held):
    """The class `label` names among the labels `held`: itself, else as the gallery keeps labels (stripped, NFC:
    check_label), so DELETE /api/labels/cafe\u0301 finds the class added as 'café' (it answered 404)."""
    if label in held or not isinstance(label, str):
        return label
    key = nfc(label.strip())
    return key if key in held else label


def image_extension(data):
    """An extension for stored upload bytes, from their magic number (the name a client sent is
    never used on the server)."""
    head = bytes(data[:12])
    for magic, ext in ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"BM", ".bmp"),
                       (b"II*\x00", ".tif"), (b"MM\x00*", ".tif")):
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return ".img"


def upload_path(upload_dir, sha, data):
    """Where an uploaded image is kept: named by its content, so the same image is the same path."""
    return os.path.join(os.path.abspath(upload_dir), sha[:2], sha + image_extension(data))


def default_upload_dir(index_process):
    """Where images added through the API are kept unless Settings.upload_dir says: beside the gallery
    (FAISS: <index_dir>/uploads; Milvus Lite: <file>.uploads/<collection>). A Milvus server's data are
    not on this machine, so a folder for its uploads must be chosen (--upload-dir)."""
    backend = index_process.get("backend") or "faiss"
    _, location, options = gallery_location(index_process)
    if backend == "faiss":
        return os.path.join(location, "uploads")
    if backend == "milvus":
        from ..gallery.milvus_store import is_local, split_location
        uri, collection = split_location(location, options.get("collection"))
        if is_local(uri):
            return os.path.join(uri + ".uploads", collection)
        where = f"the Milvus server {uri}"
    else:
        where = f"a {backend} gallery"
    raise ConfigError(f"the gallery is {where}: give --upload-dir (Settings.upload_dir), the folder on this "
                      f"machine where images added through the API are kept")


GALLERY_FILE = "GALLERY"  # in a gallery's subfolder of a given upload folder: which gallery its uploads are


def gallery_identity(index_process):
    """The gallery an IndexProcess section names, as one line (backend, resolved location, collection): the same
    gallery however its path is spelled, and another gallery for another folder, file or collection."""
    _, location, options = gallery_location(index_process)
    location = os.fspath(location)
    if "://" not in location:
        location = os.path.realpath(location)
    return json.dumps([index_process.get("backend") or "faiss", location, options.get("collection")])


def service_upload_dir(given, index_process):
    """(the folder this service stores uploads in, its gallery's identity or None). The default folder beside
    the gallery (default_upload_dir) is that gallery's own: uploads go straight into it. A folder given with
    --upload-dir may be shared by the services of several galleries, and each deletes (item removal, compact's
    reclaiming) only uploads its own gallery no longer names; so each gallery keeps its uploads in its own
    subfolder, gallery-<16 hex of its identity's sha256>, whose GALLERY file names the gallery. (Uploads stored
    straight into a given folder by an older version are never deleted: nothing says whose they are.)"""
    if not given:
        return default_upload_dir(index_process), None
    identity = gallery_identity(index_process)
    key = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return os.path.join(os.path.abspath(given), f"gallery-{key}"), identity


def check_upload_dir(path, given=True):
    """Refuse, at start-up, an upload folder that cannot hold uploads: a file (or anything not a folder) is
    there, or it is not writable, or it does not exist and cannot be made (its nearest existing parent is not
    a writable folder). ConfigError naming it (`given`: it came from --upload-dir)."""
    what = f"--upload-dir {path}" if given else f"the upload folder {path} (--upload-dir to choose another)"
    path = os.path.abspath(path)
    if os.path.lexists(path):
        if not os.path.isdir(path):
            kind = "a file" if os.path.isfile(path) else "a special file" if os.path.exists(path) \
                else "a broken symbolic link"
            raise ConfigError(f"{what}: is {kind}, not a folder; images added through the API are kept there")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{what}: not writable by this user; images added through the API are kept there")
        return
    parent = os.path.dirname(path)
    while parent and not os.path.lexists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{what}: cannot be made, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: cannot be made, {parent} is not writable by this user")


class GalleryWriter:
    """The writer thread's state: its store object and the folder of uploaded images, which only
    this thread touches (a stored file is named by its content's sha256, so the same image uploaded
    twice is one path, and the gallery reports it as already present)."""

    def __init__(self, index_process, upload_dir, fingerprint, owner=None):
        self.gallery = open_gallery(index_process)
        self.upload_dir = os.path.abspath(upload_dir)
        self.fingerprint = fingerprint
        self.owner = owner  # the gallery's identity when upload_dir is its subfolder of a shared folder

    def _mark_owner(self):
        """Write the subfolder's GALLERY file (once; atomically): which gallery these uploads belong to."""
        path = os.path.join(self.upload_dir, GALLERY_FILE)
        if self.owner is None or os.path.lexists(path):
            return
        fd, tmp = tempfile.mkstemp(dir=self.upload_dir, prefix=".gallery-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.owner + "\n")
            os.link(tmp, path)  # never over a file that appeared meanwhile
        except FileExistsError:
            pass
        finally:
            os.remove(tmp)

    def _owned(self):
        """False when the folder's GALLERY file names another gallery (a copied or hand-made folder): then
        nothing in it is reclaimed."""
        if self.owner is None:
            return True
        from ..utils.files import MAX_CONFIG_BYTES, read_input_text
        try:
            text = read_input_text(os.path.join(self.upload_dir, GALLERY_FILE), "upload folder owner",
                                   MAX_CONFIG_BYTES)
        except (OSError, UnicodeDecodeError):
            return not os.path.lexists(os.path.join(self.upload_dir, GALLERY_FILE))
        return text.strip() == self.owner

    def before_job(self):
        stale = _refresh(self.gallery)
        if stale:
            log.warning("writer: gallery refresh failed: %s", stale)

    # files ------------------------------------------------------------
    def _store(self, sha, data):
        """Write the upload once (atomically); (absolute path, created now)."""
        path = upload_path(self.upload_dir, sha, data)
        if os.path.lexists(path):
            if not is_stored_upload(self.upload_dir, path):  # a user's file (or link) under an upload's name
                raise Conflict(f"{path} is in the way: a file the service did not store has the name of this "
                               f"upload; move it away")
            try:  # recent again: compact's reclaiming (RECLAIM_GRACE_S) leaves it to the add that reuses it
                os.utime(path)
            except OSError:
                pass
            return path, False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._mark_owner()
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path, True

    def _forget_files(self, paths):
        """Delete the files no longer in the gallery that this service stored itself (is_stored_upload:
        <upload folder>/<2 hex>/<sha256><ext> whose content is its name); never any other file, such as a
        user's own photo that a gallery built from a folder names (even one inside the upload folder)."""
        paths = [p for p in paths if p and is_stored_upload(self.upload_dir, p)]
        still = self.gallery.existing_paths(paths) if paths else set()
        for p in paths:
            if p not in still and os.path.isfile(p):
                try:
                    os.remove(p)
                    if not os.listdir(os.path.dirname(p)):
                        os.rmdir(os.path.dirname(p))
                except OSError as e:
                    log.warning("could not delete %s: %s", p, e)

    # operations -------------------------------------------------------
    def add(self, label, uploads, vectors, boxes):
        """uploads: [(sha256, bytes)] aligned with vectors/boxes -> (ids with -1 for duplicates, paths)."""
        stored = []
        try:  # one gallery update for the whole request; on any failure, no file of it is left behind
            for sha, data in uploads:
                stored.append(self._store(sha, data))
            paths = [p for p, _ in stored]
            ids = self.gallery.add(vectors, label, paths, boxes, model_fingerprint=self.fingerprint)
        except BaseException:
            for path, created in stored:
                if created and os.path.exists(path):
                    os.remove(path)
            raise
        return [int(i) for i in ids], paths, self._summary()

    def remove_item(self, item_id):
        found = self.gallery.records(ids=[item_id])
        if not found:
            raise NotFound(f"no gallery item {item_id}")
        path = found[0]["path"]
        if path is None:
            raise Conflict(f"item {item_id} has no image path; the gallery removes items by path or label only")
        removed = self.gallery.remove(paths=[path])
        if item_id not in {int(i) for i in removed}:
            raise NotFound(f"no gallery item {item_id}")
        self._forget_files([path])
        return {"removed": [int(i) for i in removed], **self._summary()}

    def remove_label(self, label):
        label = held_label(label, self.gallery.label_counts())
        paths = [r["path"] for r in self.gallery.records() if r["label"] == label]
        if label not in self.gallery.label_counts():
            raise NotFound(f"no class {label!r} in the gallery")
        removed = self.gallery.remove(labels=[label])
        self._forget_files(paths)
        return {"label": label, "removed": len(removed), **self._summary()}

    def rename(self, old, new, merge=False):
        """Relabel every item of `old`, with the same vectors, paths and boxes (new ids on FAISS, the
        same on Milvus, where an id is its path's hash). A store with `relabel` (FAISS) does it in ONE
        update (a server killed meanwhile leaves `old` or `new`, never neither); otherwise the items
        are removed and re-added, two updates, so a reader may briefly see neither label."""
        counts = self.gallery.label_counts()
        old = held_label(old, counts)
        if old not in counts:
            raise NotFound(f"no class {old!r} in the gallery")
        if new == old:
            return {"label": new, "previous": old, "moved": 0, **self._summary()}
        if new in counts and not merge:
            raise Conflict(f"class {new!r} already exists; add ?merge=1 to merge {old!r} into it")
        relabel = getattr(self.gallery, "relabel", None)
        if relabel is not None:
            removed, new_ids = relabel(old, new, model_fingerprint=self.fingerprint)
            return {"label": new, "previous": old, "moved": int((np.asarray(new_ids) >= 0).sum()),
                    "ids": [int(i) for i in new_ids], "lost": 0, **self._summary()}
        recs = [r for r in self.gallery.records() if r["label"] == old]
        vectors = self.gallery.get_vectors([r["id"] for r in recs])
        removed = {int(i) for i in self.gallery.remove(labels=[old])}
        keep = [i for i, r in enumerate(recs) if r["id"] in removed]
        paths = [recs[i]["path"] for i in keep]
        boxes = [recs[i]["box"] for i in keep]
        try:
            new_ids = self.gallery.add(vectors[keep], new, paths, boxes, model_fingerprint=self.fingerprint)
        except BaseException:
            log.exception("rename %r -> %r: re-adding failed; restoring %r", old, new, old)
            self.gallery.add(vectors[keep], old, paths, boxes, model_fingerprint=self.fingerprint)
            raise
        lost = len(removed) - len(keep)  # items added to `old` by another process between the two steps
        return {"label": new, "previous": old, "moved": int((np.asarray(new_ids) >= 0).sum()),
                "ids": [int(i) for i in new_ids], "lost": lost, **self._summary()}

    def compact(self):
        """Rebuild the index without removed items, then reclaim the stored uploads no item names (left by a
        server killed between a gallery update and deleting its files: kill -9 during DELETE /api/labels/X)."""
        self.gallery.compact()
        return {**self._summary(), "reclaimed_uploads": self.reclaim_uploads()}

    def reclaim_uploads(self, grace_s=RECLAIM_GRACE_S):
        """Delete the upload folder's files that no gallery item names; their number. Only files this service
        stores are candidates, never anything else a user put there: a regular file (not a symbolic link) one
        folder down, named <2 hex>/<sha256><ext> whose content's sha256 is its name, or a temporary file of
        _store's (.upload-XXXXXXXX); and only once they are `grace_s` old (RECLAIM_GRACE_S)."""
        root = self.upload_dir
        if not self._owned():
            log.warning("compact: %s names another gallery in its %s file; reclaimed nothing there", root, GALLERY_FILE)
            return 0
        try:
            subs = [d for d in os.listdir(root) if re.fullmatch(r"[0-9a-f]{2}", d)]
        except OSError:  # no upload folder (yet): nothing to reclaim
            return 0
        now, stored, temps = time.time(), [], []
        for sub in subs:
            folder = os.path.join(root, sub)
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    continue
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                path = os.path.join(folder, name)
                temp = _UPLOAD_TEMP.match(name)
                if not (temp or _is_upload_name(sub, name)):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < grace_s:
                    continue
                (temps if temp else stored).append(path)
        named = self.gallery.existing_paths(stored) if stored else set()
        orphans = [p for p in stored if p not in named and is_stored_upload(root, p)] + temps
        reclaimed = 0
        for path in orphans:
            try:
                os.remove(path)
                reclaimed += 1
                folder = os.path.dirname(path)
                if not os.listdir(folder):
                    os.rmdir(folder)
            except OSError as e:
                log.warning("could not delete %s: %s", path, e)
        if reclaimed:
            log.warning("compact: reclaimed %d stored upload(s) that no gallery item names", reclaimed)
        return reclaimed

    def _summary(self):
        return {"version": self.gallery.version, "count": len(self.gallery)}


def _is_upload_name(sub, name):
    """Whether `sub`/`name` is the layout upload_path gives: <2 hex>/<the same 2 hex + 62 hex><extension>."""
    m = _UPLOAD_NAME.match(name)
    return bool(m) and m.group(1) == sub


def is_stored_upload(upload_dir, path):
    """Whether `path` is a file this service stored (the one rule for deleting a file: _forget_files,
    reclaim_uploads): an absolute path exactly <upload_dir>/<2 hex>/<sha256><ext> (upload_path's layout;
    no `..`, its folder resolving to that folder of the resolved upload folder: no symbolic link out),
    a regular file (not a link), whose content's sha256 is its name. A gallery item's relative path (a
    gallery built from a folder: relative to its image_root) is never one: uploads are stored absolute."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    root = os.path.abspath(upload_dir)
    folder, name = os.path.split(path)
    parent, sub = os.path.split(folder)
    if parent != root or os.path.normpath(path) != path or not _is_upload_name(sub, name):
        return False
    try:
        if os.path.realpath(folder) != os.path.join(os.path.realpath(root), sub):
            return False
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    return _content_is_its_name(path)


def _content_is_its_name(path):
    """Whether the file's sha256 is the hex digits its name starts with (a file the service stored)."""
    from ..utils.files import open_regular

    h = hashlib.sha256()
    try:
        with open_regular(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return False
    return os.path.basename(path).startswith(h.hexdigest())


# ---------------------------------------------------------------- reads
class Catalog:
    """The read side: a store object under a lock, refreshed on every call; the records are indexed
    (by id, label and path) once per published version. A store without versions (None) is read
    anew on every call: one item by its id (thumbnails, search hits), every item for listings."""

    def __init__(self, index_process, image_root=None):
        self.gallery = open_gallery(index_process)
        self.image_root = image_root
        self._lock = threading.Lock()
        self._indexed = None  # (version, by_id, by_label, by_path)
        self.stale = None

    def _fresh(self):
        self.stale = _refresh(self.gallery)
        return self.gallery

    def summary(self):
        with self._lock:
            g = self._fresh()
            counts = g.label_counts()
            return {"version": g.version, "count": len(g), "labels": len(counts),
                    "model_fingerprint": g.model_fingerprint, "embedding_size": g.embedding_size,
                    "index_method": g.manifest["index_method"], "dist_type": g.manifest["dist_type"],
                    "updated_at": g.manifest.get("updated_at"), "stale": self.stale}

    def label_counts(self):
        with self._lock:
            g = self._fresh()
            return g.version, g.label_counts()

    def _index(self, g):
        if self._indexed is None or g.version is None or self._indexed[0] != g.version:
            by_id, by_label, by_path = {}, {}, {}
            for r in g.records():
                by_id[r["id"]] = r
                by_label.setdefault(r["label"], []).append(r)
                if r["path"] is not None:
                    by_path[r["path"]] = r
            self._indexed = (g.version, by_id, by_label, by_path)
        return self._indexed

    def items(self, label=None, offset=0, limit=50):
        with self._lock:
            version, by_id, by_label, _ = self._index(self._fresh())
            rows = by_label.get(held_label(label, by_label), []) if label is not None else list(by_id.values())
            return version, len(rows), rows[offset:offset + limit]

    def record(self, item_id):
        with self._lock:
            g = self._fresh()
            if g.version is None:
                found = g.records(ids=[int(item_id)])
                return found[0] if found else None
            return self._index(g)[1].get(int(item_id))

    def by_path(self, path):
        with self._lock:
            return self._index(self._fresh())[3].get(path)

    def existing_paths(self, paths):
        with self._lock:
            return self._fresh().existing_paths(paths)

    def resolve(self, path):
        """A stored path on disk: absolute as it is, relative to IndexProcess.image_root (where
        tools/build_gallery.py read it from)."""
        if path is None:
            return None
        if os.path.isabs(path):
            return path
        return os.path.join(self.image_root, path) if self.image_root else None


class Thumbnails:
    """JPEG thumbnails of gallery items by id (the path comes from the gallery, never the client),
    made a few at a time and kept in a bounded LRU cache."""

    def __init__(self, catalog, max_pixels=None, cache=512, slots=2):
        self.catalog, self.max_pixels = catalog, max_pixels
        self._cache, self._cache_size = OrderedDict(), int(cache)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(slots)

    def get(self, item_id, size=160, crop=False):
        rec = self.catalog.record(item_id)
        if rec is None:
            raise NotFound(f"no gallery item {item_id}")
        key = (int(item_id), int(size), bool(crop))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        path = self.catalog.resolve(rec["path"])
        if path is None or not os.path.isfile(path):
            raise NotFound(f"the image of gallery item {item_id} is not on the server")
        with self._slots:
            try:
                rgb = read_image(path, self.max_pixels)
            except ImageReadError:
                raise NotFound(f"the image of gallery item {item_id} cannot be read on the server") from None
            if crop and rec.get("box"):
                x1, y1, x2, y2 = (int(round(v)) for v in rec["box"])
                if x2 - x1 >= 2 and y2 - y1 >= 2:
                    rgb = rgb[max(0, y1):y2, max(0, x1):x2]
            h, w = rgb.shape[:2]
            scale = min(1.0, size / max(h, w))
            if scale < 1.0:
                rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                 interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        data = buf.tobytes()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return data


# ---------------------------------------------------------------- the service
def item_json(rec):
    """A gallery record as the API shows it (models.Item): never the server's path, only its file name."""
    path = rec.get("path")
    return {"id": rec["id"], "label": rec["label"], "name": os.path.basename(path) if path else None,
            "box": rec.get("box"), "added_at": rec.get("added_at"), "thumbnail": f"/api/items/{rec['id']}/thumbnail"}


class Service:
    """Everything the routes need. `make_system()` is called on each inference thread (so the
    predictors belong to it); the gallery is `index_process`'s (an IndexProcess section, or a FAISS
    gallery's directory): the one make_system's RecognitionSystem searches.

    The routes (routers/) call its request-level operations: the coroutines below (on the event loop:
    decode in a bounded number of threads, inference and writes as jobs of their owning threads) and
    the read methods (run in the thread pool)."""

    def __init__(self, make_system, index_process, settings=None, image_root=None, use_det=False,
                 min_crop_std=0.0, min_side=MIN_IMAGE_SIDE, return_k=5, make_text=None):
        self.settings = settings or Settings()
        ip = index_process
        self.index_process = dict(ip) if isinstance(ip, Mapping) else {"backend": "faiss", "index_dir": os.fspath(ip)}
        self.backend = self.index_process.get("backend") or "faiss"
        gallery_location(self.index_process)  # a missing index_dir / uri fails here, before any model loads
        self.image_root = image_root
        self.return_k = int(return_k)
        self.upload_dir, self.upload_owner = service_upload_dir(self.settings.upload_dir, self.index_process)
        if self.settings.writes_enabled:  # a folder that cannot be one would answer every upload 500
            check_upload_dir(self.settings.upload_dir or self.upload_dir, given=bool(self.settings.upload_dir))
        s = self.settings
        self.inference = ThreadOwner(
            "inference", lambda: Recognizer(make_system(), use_det, min_crop_std, min_side, make_text), workers=s.workers,
            capacity=s.queue, queue_timeout=s.queue_timeout, max_pixels=s.inflight_pixels,
            before_job=lambda r: r.before_job())
        self.writer = None
        self.catalog = None
        self.thumbnails = None
        self.fingerprint = self.embedding_size = None
        self.started_at = None
        self.decode_slots = asyncio.Semaphore(s.decode_slots)  # images decoded at once

    @classmethod
    def from_config(cls, cfg, settings=None):
        """From an inference config (the one tools/predict_system.py takes); the gallery is IndexProcess's
        (built by tools/build_gallery.py)."""
        g, ip = cfg["Global"], cfg["IndexProcess"]
        if not gallery_exists(ip):  # before any model loads, and saying what to run
            raise ConfigError(f"no gallery at {gallery_location(ip)[1]}: build it first with "
                              f"python tools/build_gallery.py -c CONFIG (the same config; IndexProcess.data_file "
                              f"lists its images)")
        from ..infer.factory import text_predictor

        settings = settings or Settings()
        if settings.max_pixels is None and g.get("max_image_pixels"):
            settings.max_pixels = int(g["max_image_pixels"])
        return cls(lambda: RecognitionSystem.from_config(cfg), ip, settings, image_root=ip.get("image_root"),
                   use_det=ip.get("use_det", False), min_crop_std=ip.get("min_crop_std", 0.0),
                   min_side=g.get("min_image_side", MIN_IMAGE_SIDE), return_k=ip.get("return_k", 5),
                   make_text=lambda rec: text_predictor(cfg, rec))

    def start(self):
        self.inference.start()
        first = self.inference.states[0]
        self.fingerprint, self.embedding_size = first.fingerprint, first.embedding_size
        s = self.settings
        self.writer = ThreadOwner(
            "writer", lambda: GalleryWriter(self.index_process, self.upload_dir, self.fingerprint, self.upload_owner),
            workers=1,
            capacity=s.write_queue, queue_timeout=max(s.queue_timeout, 120.0),
            before_job=lambda w: w.before_job()).start()
        self.catalog = Catalog(self.index_process, self.image_root)
        self.thumbnails = Thumbnails(self.catalog, s.max_pixels, s.thumbnail_cache)
        self.started_at = time.time()
        return self

    def stop(self):
        """Stop the threads, then close their store objects and the catalog's (a Milvus Lite file is
        free for other processes once every store of it in this one is closed)."""
        self.inference.stop()
        stores = [r.gallery for r in self.inference.states]
        if self.writer is not None:
            self.writer.stop()
            stores += [w.gallery for w in self.writer.states]
        if self.catalog is not None:
            stores.append(self.catalog.gallery)
        for gallery in stores:
            gallery.close()

    def health(self):
        g = self.catalog.summary()
        stale = g.pop("stale") or next((r.stale for r in self.inference.states if r.stale), None)
        return {"status": "degraded" if stale else "ok", **g, "gallery_size": g["count"],
                "backend": self.backend, "location": self.catalog.gallery.index_dir,
                "model": {"fingerprint": self.fingerprint, "embedding_size": self.embedding_size,
                          "text_search": text_fingerprint(self.fingerprint) is not None
                          and g["model_fingerprint"] in (None, self.fingerprint)},
                "model_matches_gallery": g["model_fingerprint"] in (None, self.fingerprint),
                "writes_enabled": self.settings.writes_enabled,
                "writes": "enabled (Authorization: Bearer <token>)" if self.settings.writes_enabled
                else "disabled: the server was started without a token (--token or PPSHITU_TOKEN)",
                "inference": self.inference.stats(), "stale": stale,
                "limits": {"max_body_bytes": self.settings.max_body, "max_pixels": self.max_pixels(),
                           "max_files": self.settings.max_files},
                "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else None}

    def upload_path(self, sha, data):
        return upload_path(self.upload_dir, sha, data)

    def max_pixels(self):
        from ..utils.image import max_image_pixels
        return self.settings.max_pixels or max_image_pixels()

    # ------------------------------------------------------------ reads (thread pool)
    def labels(self):
        version, counts = self.catalog.label_counts()
        return {"version": version, "count": sum(counts.values()),
                "labels": [{"label": k, "count": v} for k, v in counts.items()]}

    def items(self, label=None, offset=0, limit=50):
        version, total, rows = self.catalog.items(label, offset, limit)
        return {"version": version, "label": label, "total": total, "offset": offset, "limit": limit,
                "items": [item_json(r) for r in rows]}

    def item(self, item_id):
        rec = self.catalog.record(item_id)
        if rec is None:
            raise NotFound(f"no gallery item {item_id}")
        return item_json(rec)

    # ------------------------------------------------------------ requests (event loop)
    async def decode(self, data, where):
        if not data:
            raise ServiceError(f"{where}: empty; send the image file's bytes")
        async with self.decode_slots:
            return await run_in_threadpool(decode_image, data, where, self.max_pixels())

    async def infer(self, fn, pixels=0):
        """fn(Recognizer) on an inference thread (Busy when the queue is full)."""
        return await asyncio.wrap_future(self.inference.submit(fn, pixels))

    async def write(self, fn):
        """fn(GalleryWriter) on the writer thread."""
        return await asyncio.wrap_future(self.writer.submit(fn))

    async def predict(self, rgb):
        """POST /predict: the objects in the image, recognised."""
        out = await self.infer(lambda r: r.predict(rgb), rgb.shape[0] * rgb.shape[1])
        return {"results": out["results"], "width": rgb.shape[1], "height": rgb.shape[0],
                "gallery": {"version": out["version"], "count": out["count"]}}

    async def search(self, rgb, k=0, whole=False):
        """POST /search: the gallery items nearest to the image's main object (`whole`: the whole image)."""
        out = await self.infer(lambda r: r.search(rgb, k or self.return_k, whole), rgb.shape[0] * rgb.shape[1])
        return {"box": out["box"], "results": await self._items(out), "higher_is_better": out["higher_is_better"],
                "width": rgb.shape[1], "height": rgb.shape[0], "gallery": {"version": out["version"]}}

    async def search_text(self, text, k=0):
        """POST /search with a text query: the gallery items nearest to the sentence (a text-image model's
        gallery); `truncated` and a `note` when it was cut to the model's context length."""
        from ..infer.text_tokenizer import MAX_QUERY_CHARS, TextQueryError
        from ..infer.text import truncation_note

        if not isinstance(text, str) or not text.strip():
            raise TextQueryError(f"empty text query {text!r}: give words to search for")
        if len(text) > MAX_QUERY_CHARS:
            raise ServiceError(f"the text query has {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
        out = await self.infer(lambda r: r.search_text(text, k or self.return_k))
        note = truncation_note(out["text"])
        return {"text": text, "box": None, "results": await self._items(out), "truncated": out["text"]["truncated"],
                "higher_is_better": out["higher_is_better"], "gallery": {"version": out["version"]},
                **({"note": note} if note else {})}

    async def _items(self, out):
        """The answer's items of a search's hits (their gallery records; a hit removed meanwhile keeps its id)."""
        records = await run_in_threadpool(lambda: [self.catalog.record(h["id"]) for h in out["results"]])
        return [{**(item_json(rec) if rec else {"id": hit["id"], "label": hit["label"],
                                                "thumbnail": f"/api/items/{hit['id']}/thumbnail"}),
                 "score": hit["score"]} for hit, rec in zip(out["results"], records)]

    async def add_images(self, label, files):
        """POST /api/items: [(name, bytes)] added under `label` -> the answer's body; ServiceError 400
        (with the same body) when none could be added. Every image is decoded and embedded first (a
        chunk at a time, to bound memory), then ALL of them go to the gallery in ONE update: a server
        killed during the request has published none of them or all of them, never a part that a
        retry would report as duplicates."""
        todo, duplicates = await self._new_uploads(files)
        kept, vectors, boxes, rejected = await self._embed_uploads(todo)
        added, summary = [], None
        if kept:
            uploads = [(sha, raw) for _, sha, raw in kept]
            all_vectors = np.concatenate(vectors)
            ids, _, summary = await self.write(lambda w: w.add(label, uploads, all_vectors, boxes))
            for (name, _, _), item_id in zip(kept, ids):
                if item_id >= 0:
                    added.append({"name": name, "id": item_id, "thumbnail": f"/api/items/{item_id}/thumbnail"})
                else:
                    duplicates.append({"name": name, "reason": "the same image is already in the gallery"})
        if summary is None:
            s = await run_in_threadpool(self.catalog.summary)
            summary = {"version": s["version"], "count": s["count"]}
        body = {"label": label, "added": added, "duplicates": duplicates, "rejected": rejected, "gallery": summary}
        if not added and not duplicates:
            raise ServiceError(f"none of the {len(files)} images could be added", **body)
        if added:
            log.warning("added %d image(s) to %r (gallery %s, %d items)", len(added), label, summary["version"],
                        summary["count"])
        return body

    async def _new_uploads(self, files):
        """([(name, sha256, bytes)] not yet in the gallery, [duplicates]): an image already stored, or
        sent twice in the request, is a duplicate (its path is its content's hash)."""
        duplicates, todo, seen = [], [], set()
        shas = await run_in_threadpool(lambda: [sha256(raw) for _, raw in files])
        known = await run_in_threadpool(self.catalog.existing_paths,
                                        [self.upload_path(sha, raw) for sha, (_, raw) in zip(shas, files)])
        for sha, (name, raw) in zip(shas, files):
            path = self.upload_path(sha, raw)
            if sha in seen or path in known:
                rec = await run_in_threadpool(self.catalog.by_path, path)
                duplicates.append({"name": name, "reason": "the same image is already in the gallery" if rec else
                                   "the same image twice in this request",
                                   **({"id": rec["id"], "label": rec["label"]} if rec else {})})
                continue
            seen.add(sha)
            todo.append((name, sha, raw))
        return todo, duplicates

    async def _embed_uploads(self, todo):
        """Decode and embed EMBED_CHUNK images at a time: (kept [(name, sha, bytes)], [vectors per chunk],
        boxes, rejected [{name, error, status}])."""
        kept, vectors, boxes, rejected = [], [], [], []
        for start in range(0, len(todo), EMBED_CHUNK):
            decoded = []
            for name, sha, raw in todo[start:start + EMBED_CHUNK]:
                try:
                    decoded.append((name, sha, raw, await self.decode(raw, f"image {name!r}")))
                except ImageReadError as e:
                    rejected.append({"name": name, "error": str(e),
                                     "status": 413 if isinstance(e, ImageTooLargeError) else 400})
            if not decoded:
                continue
            pixels = sum(d[3].shape[0] * d[3].shape[1] for d in decoded)
            emb = await self.infer(lambda r: r.embed([(name, rgb) for name, _, _, rgb in decoded]), pixels)
            rejected += [{"name": decoded[pos][0], "error": why, "status": 400} for pos, why in emb.refused.items()]
            kept += [decoded[pos][:3] for pos in emb.index]
            vectors.append(emb.vectors)
            boxes += emb.boxes
            decoded = None  # the decoded pixels are not needed past embedding
        return kept, vectors, boxes, rejected


def sha256(data):
    return hashlib.sha256(data).hexdigest()


__all__ = ["Service", "Recognizer", "GalleryWriter", "Catalog", "Thumbnails", "check_label",
           "sha256", "IMAGE_EXTENSIONS", "is_stored_upload",
           "service_upload_dir"]
