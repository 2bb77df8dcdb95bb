"""A folder of images kept in sync with a gallery, incrementally (tools/index_folder.py).

Every image under the folder (recursively; hidden files and folders skipped) is one gallery item:
its path relative to the folder, its label the sub-folder it is in (relative to the folder, e.g.
`cats` or `trips/2023`), or its file name without extension when it sits in the folder itself.
A run makes the gallery match the folder:

    added      files the gallery does not hold                          embedded, added
    changed    size or mtime differ and the content hash differs too    embedded again (old vector removed)
    touched    size or mtime differ but the content hash is the same    only the state row is updated
    removed    gallery items whose file is gone (a rename is removed + added)
    unchanged  nothing is done; an unchanged run writes nothing at all (the gallery version stays)
    skipped    files that are not images (by extension: utils.image.IMAGE_EXTENSIONS, GIF included),
               hidden files and hidden folders, symbolic links to folders (not followed), ppshitu's own
               folders (own_folder_reason: a folder state, a gallery, the service's uploads) and the files
               ppshitu wrote (those the record of their folder lists -- drawings, contact sheets, a duplicates
               report and its thumbnails --; the folder's other files are indexed): counted and listed

Mass removal: a folder that vanished (an unmounted drive, a moved or emptied folder) looks like every
file deleted. A run that would remove more than MAX_REMOVAL (50 %) of the gallery's items, or all of
them, stops before changing anything (MassRemovalError: exit 2 from the tools, naming how many and
which) unless `allow_mass_removal` (--allow-mass-removal); with --rebuild the same holds for the
files the folder state indexed. Indexed files still there but no longer usable -- truncated to 0 bytes
by a failed sync, cloud placeholders, unreadable, not an image any more -- count as removals too (their
vectors would go), checked again after embedding, before the gallery changes. A sub-folder that cannot be listed (permissions, I/O error) is
reported unreadable and its items are kept, not removed; a --dir that does not exist, or cannot be
listed at all, is an error.

Folder state (`folder_state.sqlite`, inside a FAISS index directory; `--state` elsewhere) holds one
row per file: path, size, mtime_ns, sha256, and the gallery id its vector has (or `unreadable`,
so a broken file is reported once, not re-tried each run until it changes). Plus the folder's
absolute path and the model fingerprint. It carries ppshitu's mark (SQLite's application_id,
APPLICATION_ID): `--state` naming any other existing file -- a user's own SQLite database, a document --
is refused (one line, exit 2) before anything is written, the gallery included.

A run is planned, then applied: plan_sync decides from the scan, the state and the gallery's items alone
what to embed, verify by hash, remove or keep, and whether the mass-removal guard stops it (a SyncPlan);
apply_plan hashes, embeds, updates the gallery and writes the state.

Consistency with the gallery: the gallery is the truth for *what is indexed*; a state row is
trusted only while its gallery id is the id the gallery holds for that path. The run embeds first,
then updates the gallery (remove, then add: each an atomic step of the store), then writes the
state in one SQLite transaction. A run killed between those steps leaves rows whose ids do not
match the gallery's (or gallery paths without rows); the next run re-embeds exactly those files,
so a crash costs some embedding, never a stale or missing vector. The state is written before the
first vector is added; a gallery with items but no state (not made by this tool, or its state
deleted) is refused, since syncing it would remove whatever is not in the folder: `--rebuild`
embeds the folder into it again.
"""
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from ..errors import ConfigError, PPShiTuError
from ..gallery.errors import GalleryError
from ..utils.files import open_regular
from ..utils.image import IMAGE_EXTENSIONS, image_file_chunks, not_regular_reason
from ..utils.text import is_undecodable, name_from_text, name_text
from . import common

log = logging.getLogger("ppshitu.library")
MAX_REMOVAL = 0.5   # the largest share of a gallery one sync removes without allow_mass_removal
STATE_FILE = "folder_state.sqlite"
UPLOADS_OWNER_FILE = "GALLERY"  # serving.service.GALLERY_FILE (not imported: the library needs no web stack)
STATE_FORMAT = "ppshitu-folder-state-1"
# the mark of ppshitu's folder states: SQLite's application_id header field ("PPsf"); a file without it
# is someone else's and never written (check_state_file)
APPLICATION_ID = int.from_bytes(b"PPsf", "big")
SQLITE_HEADER = b"SQLite format 3\x00"
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to the folder, '/'-separated
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    gallery_id INTEGER,             -- NULL when unreadable
    status TEXT NOT NULL            -- 'indexed' | 'unreadable'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


# ------------------------------------------------------------------ files
def label_for(relpath):
    """The sub-folder (relative, '/'-separated), or the file's stem for a file in the folder itself; NFC (a
    folder named `te\u0301al` on one disk and `t\u00e9al` on another is one class)."""
    from ..utils.text import nfc

    folder, name = os.path.split(relpath)
    return nfc(folder.replace(os.sep, "/") if folder else (os.path.splitext(name)[0] or name))


def sha256_file(path):
    """The content hash of an image file, read by utils.image's one opener: regular files only (a FIFO
    would block, /dev/zero never end), at most the byte limit the pixel limit sets; ImageReadError
    (an OSError) naming the file and why otherwise."""
    h = hashlib.sha256()
    for chunk in image_file_chunks(path):
        h.update(chunk)
    return h.hexdigest()


def own_folder_reason(path):
    """Why the folder `path` is ppshitu's own, never indexed (None when it is not): it holds a folder state,
    a gallery, or the service's uploads. (A folder holding the record of the files ppshitu wrote there --
    utils/outputs.py: drawings, contact sheets, a duplicates report -- may hold the user's photos too: scan
    skips the recorded files only.)"""
    from ..gallery.layout import CURRENT, VERSIONS

    if os.path.lexists(os.path.join(path, STATE_FILE)):
        return f"a ppshitu index (it holds {STATE_FILE}): never indexed"
    if os.path.isfile(os.path.join(path, CURRENT)) and os.path.isdir(os.path.join(path, VERSIONS)):
        return "a ppshitu gallery: never indexed"
    # the service's uploads (serving/service.py): a gallery's subfolder of a given --upload-dir, named in its
    # GALLERY file, or a Milvus Lite gallery's default folder beside its file (X.db.uploads next to X.db)
    if re.fullmatch(r"gallery-[0-9a-f]{16}", os.path.basename(path)) and \
            os.path.isfile(os.path.join(path, UPLOADS_OWNER_FILE)):
        return f"the service's uploads of a gallery (it holds {UPLOADS_OWNER_FILE}): never indexed"
    if path.endswith(".uploads") and os.path.isfile(path[:-len(".uploads")]):
        return f"the service's uploads of the gallery {os.path.basename(path)[:-len('.uploads')]}: never indexed"
    return None


def refuse_inside(path, root, what):
    """ConfigError when the folder `path` (an output: a report, moved files) is `root` or inside it: the
    next scan of `root` would meet what was written there. No `root`: nothing to check."""
    if not root:
        return
    real, root = os.path.realpath(os.fspath(path)), os.path.realpath(os.fspath(root))
    if _inside(real, root):
        raise ConfigError(f"{what} {path} is inside the indexed folder {root}: what is written there would be "
                          f"taken for photos of the folder; choose a folder outside it")


def scan(root, exclude=(), skipped=None, unlisted=None):
    """({relpath: (size, mtime_ns)}, {relpath: error}) of the images under `root`, recursively.
    Hidden entries (names starting with '.'), the directories in `exclude` and ppshitu's own folders
    (own_folder_reason: outputs, indexes, galleries) are skipped, as are the files the record of root's
    own outputs lists; every other file or folder passed over goes into `skipped` ({relpath: why}) when
    given, and the folders that could not be listed (also in the errors; '.' for `root` itself) into the
    set `unlisted`."""
    from ..utils.outputs import recorded_outputs

    root = os.path.abspath(root)
    excluded = {os.path.realpath(e) for e in exclude if e}
    written = {name_text(p) for p in recorded_outputs(root)}  # (--dir an output folder itself: not photos either)
    found, errors = {}, {}
    skipped = {} if skipped is None else skipped
    unlisted = set() if unlisted is None else unlisted

    def relpath(path):  # as text: a name that is not UTF-8 has its bytes written \\xNN (utils/text.py)
        return name_text(os.path.relpath(path, root).replace(os.sep, "/"))

    def walk_error(e):
        errors[relpath(e.filename)] = e.strerror or str(e)
        unlisted.add(relpath(e.filename))

    for d, dirs, files in os.walk(root, onerror=walk_error):
        kept = []
        for x in sorted(dirs):
            full = os.path.join(d, x)
            if os.path.realpath(full) in excluded:
                continue
            why = "hidden folder" if x.startswith(".") else own_folder_reason(full) or (
                "a symbolic link to a folder: not followed (index that folder with its own --dir)"
                if os.path.islink(full) else None)
            if why:
                skipped[relpath(full)] = why
                continue
            kept.append(x)
            # ppshitu's outputs recorded there (drawings, a report's thumbnails): skipped one by one, the rest indexed
            sub = os.path.relpath(full, root).replace(os.sep, "/")
            written |= {name_text(f"{sub}/{p}") for p in recorded_outputs(full)}
        dirs[:] = kept
        for name in files:
            full = os.path.join(d, name)
            rel = relpath(full)
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                skipped[rel] = "hidden file" if name.startswith(".") else "not an image file"
                continue
            if rel in written:
                skipped[rel] = "written by ppshitu (listed in its folder's record of its outputs): never indexed"
                continue
            if rel in found or rel in errors:  # a name that is not UTF-8 spelt like another file's name
                rel = _one_key(rel, is_undecodable(os.path.relpath(full, root)), found, errors, skipped)
                if rel is None:
                    continue
            try:
                st = os.stat(full)
            except OSError as e:  # e.g. a broken symbolic link
                errors[rel] = e.strerror or str(e) or type(e).__name__
                continue
            why = not_regular_reason(full, st)  # a FIFO would hang the hashing, a device never end it
            if why:
                errors[rel] = why
                continue
            found[rel] = (st.st_size, st.st_mtime_ns)
    return found, errors


def _one_key(rel, escaped, found, errors, skipped):
    """Two files, one key `rel`: a name that is not UTF-8 (`bad<0xff>.jpg`, its key spelt `bad\\xff.jpg`) and
    a file literally named so. The literal name keeps the key (common.resolve opens it); the other is
    skipped and said. Returns the key of the file met now (`escaped`: its name is the undecodable one), or None."""
    skipped[rel + " (not UTF-8)"] = f"its name is not UTF-8 and written so, it reads as another file's: {rel}; rename it"
    if escaped:
        return None
    found.pop(rel, None)
    errors.pop(rel, None)
    return rel


# ------------------------------------------------------------------ state
@dataclass
class Row:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    gallery_id: int
    status: str


class StateFileError(ConfigError):
    """--state names an existing file that is not a ppshitu folder state: refused, nothing written."""


def check_state_file(path):
    """Refuse (StateFileError, one line: exit 2 from the tools) an existing `path` that is not ppshitu's folder
    state, before anything is written: a folder state carries APPLICATION_ID in its SQLite header (one made
    before the mark: its `meta` table says STATE_FORMAT and it has no other tables). An empty file is taken
    as a new state (it holds nothing to lose)."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    why, head = not_regular_reason(path), b""
    try:
        if why is None:  # utils/files.py's opener: a FIFO swapped in meanwhile cannot block the open
            with open_regular(path) as f:
                head = f.read(100)
    except OSError as e:
        why = why or e.strerror or str(e)
    if why is None and head and not head.startswith(SQLITE_HEADER):
        why = "not a SQLite database"
    elif why is None and head and int.from_bytes(head[68:72], "big") != APPLICATION_ID and not _legacy_state(path):
        why = "a SQLite database without ppshitu's folder-state mark: another program's"
    if why:
        raise StateFileError(f"--state {path}: an existing file that is not a ppshitu folder state ({why}); "
                             f"nothing was written. Give the path of a new file, or of a state index_folder made")


def _legacy_state(path):
    """Whether the SQLite file `path` is a folder state written before the mark: tables `files` and `meta`
    only, its meta's format STATE_FORMAT, and application_id 0."""
    try:
        with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as con:
            if con.execute("PRAGMA application_id").fetchone()[0] != 0:
                return False
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables != {"files", "meta"}:
                return False
            return con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (STATE_FORMAT,)
    except sqlite3.Error:
        return False


def _read_only_uri(path):
    import pathlib

    return pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"  # (a '#' or '?' in a name is escaped)


class FolderState:
    """The SQLite sidecar (see the module docstring). Use as a context manager: it holds an exclusive
    lock on `<path>.lock` so two runs on one index cannot interleave. A file at its path that is not
    ppshitu's is refused before anything is written (check_state_file)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.rows, self.meta = {}, {}
        self._lock_file = None

    @property
    def root(self):
        """The indexed folder (its name as the OS spells it: utils/text.py)."""
        text = self.meta.get("root")
        real = name_from_text(text)
        return real if real != text and not os.path.lexists(text) and os.path.lexists(real) else text

    def exists(self):
        return os.path.isfile(self.path)

    def __enter__(self):
        check_state_file(self.path)  # before the lock file or anything else is made
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock_file = open(self.path + ".lock", "a+")
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
        self.load()
        return self

    def __exit__(self, *exc):
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def load(self):
        self.rows, self.meta = {}, {}
        check_state_file(self.path)
        if not self.exists() or not os.path.getsize(self.path):
            return self
        try:
            with contextlib.closing(sqlite3.connect(_read_only_uri(self.path), uri=True)) as con:
                self.meta = dict(con.execute("SELECT key, value FROM meta"))
                for r in con.execute("SELECT path, size, mtime_ns, sha256, gallery_id, status FROM files"):
                    self.rows[r[0]] = Row(*r)
        except sqlite3.DatabaseError as e:
            log.warning("%s: unreadable folder state (%s); every file is checked and embedded again", self.path, e)
            self.rows, self.meta = {}, {}
        if self.meta and self.meta.get("format") != STATE_FORMAT:
            raise GalleryError(f"{self.path}: not a ppshitu folder state (format {self.meta.get('format')!r})")
        return self

    def write(self, rows, meta):
        """Replace the whole state in one transaction (a crash leaves the old state or the new one)."""
        check_state_file(self.path)  # (never another program's database)
        con = sqlite3.connect(self.path, isolation_level=None)
        try:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.executescript(SCHEMA)
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM files")
            con.executemany("INSERT INTO files VALUES (?,?,?,?,?,?)",
                            [(r.path, r.size, r.mtime_ns, r.sha256, r.gallery_id, r.status) for r in rows.values()])
            con.execute("DELETE FROM meta")
            con.executemany("INSERT INTO meta VALUES (?,?)", [(k, name_text(str(v))) for k, v in meta.items()])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        self.rows, self.meta = dict(rows), {k: name_text(str(v)) for k, v in meta.items()}


def state_path(ip, given=None):
    """The folder state's file: `given`, else inside the FAISS index directory, else beside a local
    store file (a Milvus Lite .db: `<file>.<collection>.folder_state.sqlite`)."""
    if given:
        return os.fspath(given)
    _, loc, options = common.where(ip)
    loc = os.fspath(loc)
    if common.backend(ip) == "faiss":
        return os.path.join(loc, STATE_FILE)
    if "://" not in loc:
        name = options.get("collection")
        return f"{loc}.{name}.{STATE_FILE}" if name else f"{loc}.{STATE_FILE}"
    raise ConfigError(f"IndexProcess.backend {common.backend(ip)} at {loc}: give --state FILE for the "
                      f"folder state (a local SQLite file)")


def read_state(ip, given=None):
    """The FolderState of a gallery made by index_folder, or None (read only, no lock)."""
    try:
        path = state_path(ip, given)
    except ConfigError:
        return None
    st = FolderState(path)
    return st.load() if st.exists() else None


# ------------------------------------------------------------------ sync
@dataclass
class SyncReport:
    root: str
    index: str
    added: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    touched: list = field(default_factory=list)
    unchanged: int = 0
    unreadable: list = field(default_factory=list)        # (relpath, why) new this run
    skipped: list = field(default_factory=list)           # (relpath, why): not images, hidden (never indexed)
    still_unreadable: int = 0                              # known unreadable, unchanged: not re-tried
    healed: list = field(default_factory=list)             # re-embedded because state and gallery disagreed
    created: bool = False
    count: int = 0
    version_before: str = None
    version_after: str = None
    seconds: float = 0.0

    @property
    def wrote(self):
        return bool(self.added or self.changed or self.removed or self.created)

    def summary(self):
        return {"added": len(self.added), "changed": len(self.changed), "removed": len(self.removed),
                "touched": len(self.touched), "unchanged": self.unchanged, "unreadable": len(self.unreadable),
                "still_unreadable": self.still_unreadable, "healed": len(self.healed),
                "skipped": len(self.skipped), "count": self.count,
                "version": self.version_after, "seconds": round(self.seconds, 2)}


def _check_root(state, root, rebuild):
    old = state.root
    if not old or old == root or rebuild:
        return
    if os.path.isdir(old):
        raise ConfigError(f"{state.path}: this index holds the folder {old}, not {root}; give another --index "
                          f"(or --rebuild to make it index {root} instead)")
    log.warning("the indexed folder moved from %s to %s: its relative paths are kept", old, root)


class MassRemovalError(PPShiTuError):
    """A sync would remove more of the gallery than MAX_REMOVAL (or all of it): nothing was changed."""


def needs_allow(n, total, max_removal=MAX_REMOVAL):
    """Whether removing `n` of `total` items needs allow_mass_removal: more than `max_removal` of them, or all."""
    return bool(n and total and (n >= total or n > max_removal * total))


def _check_removal(removing, total, root, loc, allow, max_removal, unusable=()):
    """Raise MassRemovalError when removing `removing` (paths) of `total` items needs allow_mass_removal;
    `unusable`: those of them whose files are there but can no longer be embedded (empty, unreadable, not
    an image), the rest are gone from the folder."""
    n = len(removing)
    if allow or not needs_allow(n, total, max_removal):
        return
    from ..utils.text import printable

    share = "all of them" if n >= total else f"{100 * n / total:.0f} %, more than {100 * max_removal:g} %"
    names = ", ".join(printable(p) for p in sorted(removing)[:5]) + (", ..." if n > 5 else "")
    unusable = set(unusable) & set(removing)
    why = [f"{n - len(unusable)} because their files are not in the folder"] if n > len(unusable) else []
    if unusable:  # cloud placeholders, a failed sync, a damaged disk: the photos are not really gone
        why.append(f"{len(unusable)} because their files can no longer be read as images (empty, unreadable or "
                   f"damaged: cloud placeholders not downloaded, a failed sync?)")
    raise MassRemovalError(
        f"{root}: this run would remove {n} of the {total} items of the gallery {loc} ({share}): {'; '.join(why)}: "
        f"{names}. Nothing was changed. Is this the right folder, is its drive mounted, are its files all there? "
        f"If the files were deleted, moved or spoilt on purpose, run again with --allow-mass-removal")


@dataclass
class SyncPlan:
    """What a sync does, decided from the scan, the folder state and the gallery's items alone (plan_sync:
    no file is read, nothing is written); apply_plan carries it out: hashes `verify` and the files to embed,
    embeds, updates the gallery, writes the state.

    A renamed or moved file is a removal (`remove`) plus an addition (`embed`): its vector is embedded again.
    A moved folder (the state names another root) keeps its relative paths: `moved_from` is the old root."""
    rebuild: bool = False
    keep: dict = field(default_factory=dict)       # relpath -> Row carried over as it is: unchanged, still
    #                                                unreadable, or under a sub-folder that could not be listed
    unchanged: int = 0
    still_unreadable: int = 0
    verify: dict = field(default_factory=dict)     # relpath -> Row: indexed, but size or mtime differ; the hash
    #                                                decides (the same: touched; else embedded again)
    embed: list = field(default_factory=list)      # embedded whatever their hash (scan order): new files ...
    healed: list = field(default_factory=list)     # ... and those the gallery holds but the state does not
    #                                                vouch for (a crash, a lost state): embedded again
    remove: list = field(default_factory=list)     # gallery paths whose file is gone (sorted)
    unseen: set = field(default_factory=set)       # paths under sub-folders that could not be listed: kept
    removal: set = field(default_factory=set)      # what the mass-removal guard counts ...
    removal_total: int = 0                         # ... out of this many items
    max_removal: float = MAX_REMOVAL
    moved_from: str = None

    @property
    def added(self):
        healed = set(self.healed)
        return [rel for rel in self.embed if rel not in healed]

    @property
    def why(self):
        """{relpath: 'added' | 'changed'} of `embed`, in its order."""
        healed = set(self.healed)
        return {rel: "changed" if rel in healed else "added" for rel in self.embed}

    def needs_allow(self, extra=()):
        """Whether this sync needs allow_mass_removal; `extra`: files found unreadable since, whose old
        vectors go too."""
        return needs_allow(len(self.removal | set(extra)), self.removal_total, self.max_removal)

    def check_removal(self, root, loc, allow, extra=()):
        """MassRemovalError unless `allow` or the removal is small enough (needs_allow); `extra`: indexed files
        still there but no longer usable (their vectors would go)."""
        _check_removal(self.removal | set(extra), self.removal_total, root, loc, allow, self.max_removal,
                       unusable=set(extra) - self.removal)


def plan_sync(files, rows, held, unlisted=(), rebuild=False, max_removal=MAX_REMOVAL, root=None,
              state_root=None):
    """The SyncPlan of one sync (pure: no file is read). files: {relpath: (size, mtime_ns)} from scan;
    rows: the folder state's {relpath: Row}; held: the gallery's {path: id} ({} with `rebuild`, which
    makes the gallery again); unlisted: the sub-folders scan could not list (their items are kept).
    The mass-removal guard counts the gallery items whose file is gone, of all the gallery's items; with
    `rebuild`, the files the state indexed that are gone, of all it indexed."""
    prior = {} if rebuild else rows
    unseen = {p for p in set(held) | set(prior) if p not in files and _under(p, unlisted)}
    plan = SyncPlan(rebuild=bool(rebuild), keep={p: prior[p] for p in unseen if p in prior}, unseen=unseen,
                    max_removal=max_removal)
    for rel, (size, mtime) in files.items():
        row, gid = prior.get(rel), held.get(rel)
        if row is not None and row.status == "indexed" and gid is not None and row.gallery_id == gid:
            if (row.size, row.mtime_ns) == (size, mtime):
                plan.keep[rel] = row
                plan.unchanged += 1
            else:
                plan.verify[rel] = row
        elif row is not None and row.status == "unreadable" and gid is None \
                and (row.size, row.mtime_ns) == (size, mtime):
            plan.keep[rel] = row
            plan.still_unreadable += 1
        else:
            if gid is not None:  # held, but the state does not vouch for it (crash, lost state)
                plan.healed.append(rel)
            plan.embed.append(rel)
    plan.remove = sorted(set(held) - set(files) - unseen)
    if rebuild:  # against what the folder state says this folder indexed
        indexed = {p for p, r in rows.items() if r.status == "indexed"}
        plan.removal, plan.removal_total = indexed - set(files) - unseen, len(indexed)
    else:
        plan.removal, plan.removal_total = set(plan.remove), len(held)
    if state_root and root and state_root != root and not rebuild:
        plan.moved_from = state_root
    return plan


def sync_folder(cfg, root, rec=None, det=None, state_file=None, rebuild=False, hash_workers=2,
                allow_mass_removal=False, max_removal=MAX_REMOVAL, log_unreadable=True):
    """Make the gallery `cfg.IndexProcess` names hold exactly the images under `root` (see the module
    docstring); returns a SyncReport. `rebuild`: start the gallery again from nothing.
    `allow_mass_removal`: remove more than `max_removal` of the gallery (or all of it) when the
    folder says so (MassRemovalError otherwise, before anything is changed). `log_unreadable`: warn of
    each file found unreadable, and their count (False: the caller lists report.unreadable itself)."""
    t0 = time.time()
    ip = cfg["IndexProcess"]
    root = _check_dir(ip, root)
    report = SyncReport(root=root, index=common.location(ip))
    rec, det = common.predictors(cfg, rec=rec, det=det)
    fingerprint = common.model_id(rec)
    check_state_file(state_path(ip, state_file))  # someone else's file: refused before the gallery changes
    _ensure_store(ip, rec, fingerprint)
    with FolderState(state_path(ip, state_file)) as state:
        _check_root(state, root, rebuild)
        gallery = None if rebuild else _open_synced(ip, rec, fingerprint, state, root, report)
        held = _held_paths(gallery, report.index)
        files, scan_errors, unlisted = _scan_for_sync(ip, root, state, report)
        plan = plan_sync(files, state.rows, held, unlisted, rebuild=rebuild, max_removal=max_removal,
                         root=root, state_root=state.root)
        target = SyncTarget(cfg, root, rec, det, fingerprint, state, gallery, held, files)
        apply_plan(plan, target, report, scan_errors, unlisted, hash_workers, allow_mass_removal)
    report.seconds = time.time() - t0
    if log_unreadable:
        _log_unreadable(report)
    return report


def _log_unreadable(report):
    """One warning per file found unreadable this run, then their count: the `unreadable` of the summary."""
    from ..utils.text import printable

    for rel, err in report.unreadable:
        log.warning("unreadable, skipped: %s (%s)", printable(rel), err)
    if report.unreadable:
        log.warning("%d unreadable (listed above), not indexed; %d known unreadable and unchanged, not tried again",
                    len(report.unreadable), report.still_unreadable)


def _check_dir(ip, root):
    given, root = os.fspath(root), os.path.realpath(os.fspath(root))
    if not os.path.isdir(root):
        shown = given if root == os.path.abspath(given) else f"{given} (-> {root})"  # a link: where it leads too
        why = ("no such folder" if not os.path.lexists(root) else
               "a file, not a folder" if os.path.isfile(root) else "not a folder")
        raise ConfigError(f"--dir {shown}: {why}")
    if ip.get("dist_type", "IP") not in ("IP", "L2"):
        raise ConfigError(f"IndexProcess.dist_type must be IP or L2, got {ip.get('dist_type')!r}")
    return root


def _ensure_store(ip, rec, fingerprint):
    """An empty gallery first, so that the state (inside a FAISS index directory) has a home."""
    if common.gallery_exists(ip):
        return
    try:
        common.create_store(ip, rec.embedding_size, fingerprint)
    except GalleryError:
        if not common.gallery_exists(ip):  # (not just another run that was first)
            raise


def _open_synced(ip, rec, fingerprint, state, root, report):
    """The gallery to sync, checked against the model; its state claimed when it has none yet."""
    try:
        gallery = common.open_store(ip, rec, fingerprint)
    except GalleryError as e:
        raise GalleryError(f"{e} (tools/index_folder.py --rebuild embeds the folder again with this "
                           f"model)") from None
    if not state.exists():
        if len(gallery):
            raise ConfigError(f"{report.index}: a gallery without its folder state ({state.path}): not made by "
                              f"tools/index_folder.py, or its state was deleted; syncing would remove "
                              f"every item not in {root}. Give another --index, or --rebuild to embed "
                              f"the folder into it again")
        # claimed before anything is added: a run killed later still finds its state
        state.write({}, _meta(root, fingerprint, gallery))
    report.version_before = common.gallery_version(gallery)
    return gallery


def _held_paths(gallery, loc):
    """{gallery path: id} of the items the gallery holds ({} without a gallery)."""
    held = {}
    if gallery is not None:
        for r in gallery.records():
            if r.get("path") is None:
                log.warning("%s: gallery item %s has no path; left alone", loc, r["id"])
                continue
            held[r["path"]] = int(r["id"])
    return held


def _scan_for_sync(ip, root, state, report):
    """(files, errors, unlisted sub-folders) of scan(root), leaving out a FAISS index (and the state)
    inside it; the files passed over go into the report. A root that cannot be listed is an error."""
    loc = report.index
    exclude = [loc, os.path.dirname(os.path.abspath(state.path))] if common.backend(ip) == "faiss" else []
    skipped, unlisted = {}, set()
    files, scan_errors = scan(root, exclude=[e for e in exclude if _inside(e, root)], skipped=skipped,
                              unlisted=unlisted)
    if "." in unlisted:
        raise ConfigError(f"--dir {root}: cannot be read ({scan_errors.get('.')}); nothing was changed")
    report.skipped = sorted(skipped.items())
    return files, scan_errors, unlisted


# ------------------------------------------------------------------ apply
@dataclass
class SyncTarget:
    """What apply_plan works on: the model, the folder, its state (locked), the gallery (None: made anew)
    with the {path: id} it held when planned, and the scan's {relpath: (size, mtime_ns)}."""
    cfg: object
    root: str
    rec: object
    det: object
    fingerprint: str
    state: FolderState
    gallery: object
    held: dict
    files: dict


def apply_plan(plan, target, report, scan_errors=None, unlisted=(), hash_workers=2, allow_mass_removal=False):
    """Carry out `plan` on `target`, filling `report`: hash what the plan needs, check the mass-removal
    guard (before anything is changed), embed, update the gallery (remove, then add), write the state."""
    report.unchanged, report.still_unreadable = plan.unchanged, plan.still_unreadable
    report.healed = list(plan.healed)
    new_rows = dict(plan.keep)
    why = plan.why
    to_embed, hashes = _hash_step(plan, target, report, why, new_rows, hash_workers)
    for rel, err in (scan_errors or {}).items():
        report.unreadable.append((rel, err + (" (its gallery items are kept)" if rel in unlisted else "")))
    # before anything changes: refuse to empty the library because its folder vanished ...
    plan.check_removal(target.root, report.index, allow_mass_removal, extra=_lost(plan, target, report))
    embedded, emb = _embed_step(sorted(to_embed), target, report, why, hashes, new_rows)
    # ... or because its files are there but no longer images (truncated to 0 bytes by a failed sync, cloud
    # placeholders): counted as removals as unreadable ones are, checked again before the gallery changes
    plan.check_removal(target.root, report.index, allow_mass_removal, extra=_lost(plan, target, report))
    report.removed.extend(plan.remove)
    stale = sorted(set(report.removed) | {rel for rel in embedded if rel in target.held})
    ids = _write_gallery(target, report, embedded, emb, stale)
    for rel, gid in zip(embedded, ids):
        size, mtime = target.files[rel]
        new_rows[rel] = Row(rel, size, mtime, hashes[rel], gid, "indexed")
    _write_state(plan, target, report, new_rows)
    report.count = len(target.gallery)
    report.version_after = common.gallery_version(target.gallery)
    return report


def _lost(plan, target, report):
    """The indexed files (held by the gallery; with --rebuild, indexed by the state) still in the folder whose
    vectors this run would drop: found unreadable, empty or not an image so far."""
    if plan.rebuild:
        indexed = {p for p, r in target.state.rows.items() if r.status == "indexed"}
        return set(report.removed) | {rel for rel, _ in report.unreadable if rel in indexed}
    return set(report.removed)


def _hash_step(plan, target, report, why, new_rows, workers):
    """Hash `plan.verify` and the files to embed: (what to embed, {relpath: sha256 or None}). A verified file
    with its old hash is touched; with another, embedded again (`why` 'changed'). A file that cannot be read
    is unreadable (a changed one goes into report.removed: its old vector goes)."""
    to_embed = list(plan.embed)
    hash_errors = {}
    hashes = _hash_all(target.root, list(plan.verify) + to_embed, workers, hash_errors)
    for rel, row in plan.verify.items():
        size, mtime = target.files[rel]
        digest = hashes.get(rel)
        if digest is not None and digest == row.sha256:
            new_rows[rel] = Row(rel, size, mtime, digest, row.gallery_id, "indexed")
            report.touched.append(rel)
        else:
            why[rel] = "changed"
            to_embed.append(rel)
    for rel in list(to_embed):
        if hashes.get(rel) is None:  # could not even be read for hashing
            to_embed.remove(rel)
            report.unreadable.append((rel, hash_errors.get(rel) or "cannot be read"))
            size, mtime = target.files[rel]
            new_rows[rel] = Row(rel, size, mtime, None, None, "unreadable")
            if why[rel] == "changed":
                report.removed.append(rel)  # its old vector goes; the file no longer reads
    return to_embed, hashes


def _embed(target, rels):
    """The one place a sync embeds images: an Embedded of `rels` (relative to the folder), None for none."""
    if not rels:
        return None
    return common.embedder(target.cfg, target.rec, target.det).embed_files(
        [common.resolve(rel, target.root) for rel in rels], desc="indexing", warn=False)  # (the sync reports them)


def _embed_step(to_embed, target, report, why, hashes, new_rows):
    """(the paths embedded, their Embedded): the rest are unreadable (a changed one's old vector goes)."""
    emb = _embed(target, to_embed)
    embedded = [to_embed[i] for i in emb.index] if emb is not None else []
    refused = {to_embed[i]: why for i, why in emb.refused.items()} if emb is not None else {}
    for rel in sorted(set(to_embed) - set(embedded)):
        report.unreadable.append((rel, refused.get(rel) or "not a usable image"))
        size, mtime = target.files[rel]
        new_rows[rel] = Row(rel, size, mtime, hashes[rel], None, "unreadable")
        if why[rel] == "changed":
            report.removed.append(rel)
    for rel in embedded:
        (report.changed if why[rel] == "changed" else report.added).append(rel)
    return embedded, emb


def _write_gallery(target, report, embedded, emb, stale):
    """Remove `stale`, add `embedded` (--rebuild: make the gallery anew in one step); their gallery ids."""
    ip, rec, fingerprint = target.cfg["IndexProcess"], target.rec, target.fingerprint
    labels = [label_for(rel) for rel in embedded]
    boxes = list(emb.boxes) if (emb is not None and target.det is not None) else None
    vectors = emb.vectors if emb is not None else None
    if target.gallery is None:
        target.gallery = common.create_store(ip, rec.embedding_size, fingerprint, vectors, labels, embedded, boxes,
                                             overwrite=True)  # --rebuild: replaces the gallery in one step
        report.created = True
        by_path = {r["path"]: int(r["id"]) for r in target.gallery.records()} if embedded else {}
        return [by_path[rel] for rel in embedded]
    if stale:
        target.gallery.remove(paths=stale)
    if not embedded:
        return []
    ids = [int(i) for i in target.gallery.add(vectors, labels, paths=embedded, boxes=boxes,
                                              model_fingerprint=fingerprint)]
    if min(ids) < 0:  # a path still present: another writer got in between
        raise GalleryError(f"{report.index}: some paths were already present after removal (another process "
                           f"writes this gallery?); run again")
    return ids


def _write_state(plan, target, report, new_rows):
    """The folder state, in one transaction, when anything in it changes (an unchanged run writes nothing)."""
    state, root = target.state, target.root
    rows = {} if plan.rebuild else state.rows
    if report.wrote or report.touched or new_rows.keys() != rows.keys() or not state.exists() \
            or state.root != root:
        state.write(new_rows, _meta(root, target.fingerprint, target.gallery))


def _meta(root, fingerprint, gallery):
    return {"format": STATE_FORMAT, "root": root, "model_fingerprint": fingerprint or "",
            "gallery_version": common.gallery_version(gallery) or "",
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _under(path, folders):
    return any(path.startswith(f.rstrip("/") + "/") for f in folders if f != ".")


def _inside(path, root):
    path = os.path.realpath(path)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _hash_all(root, rels, workers, errors=None):
    """{relpath: sha256 or None when unreadable}, with a progress bar; `errors` gets why, per unreadable file."""
    from concurrent.futures import ThreadPoolExecutor

    def one(rel):
        try:
            return rel, sha256_file(common.resolve(rel, root))
        except OSError as e:
            if errors is not None:
                errors[rel] = str(e) or e.strerror or type(e).__name__
            return rel, None
    out = {}
    if not rels:
        return out
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for rel, digest in tqdm(pool.map(one, rels), total=len(rels), desc="hashing", unit="file",
                                disable=len(rels) < 50):
            out[rel] = digest
    return out
