"""Versioned gallery directories: every update writes a complete new version and
then atomically repoints CURRENT at it, so readers only ever open finished
versions and a crash mid-update leaves the previous version current.

    index_dir/
      CURRENT                 "v000007\n", replaced with write-temp + fsync + os.replace
      LOCK                    flock'd by writers (released by the kernel if a writer dies)
      versions/v000007/       manifest.json, index.faiss, vectors.npy, ids.npy, meta.sqlite
      versions/.tmp-.../      a version being written (removed by the next writer if abandoned)

A version's manifest records the sha256 of each of its files and of its own content
(gallery.py checks them when it opens the version), so damage is refused, never read as data.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time

from ..utils.files import MAX_LIST_BYTES, NotRegularError, open_regular, read_input_json
from .errors import GalleryError

CURRENT = "CURRENT"
VERSIONS = "versions"
LOCK = "LOCK"
TMP_CURRENT = f".{CURRENT}.tmp"
WRITER_FILES = {LOCK, VERSIONS, TMP_CURRENT}  # what a writer killed during a gallery's first version leaves
KEEP_OLD_VERSIONS = 1  # readers that read CURRENT just before an update can still open their version


def fsync_path(path):
    """Flush a file or directory entry to disk (a rename is durable only once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path):
    h = hashlib.sha256()
    with open_regular(path) as f:  # regular files only (utils/files.py): a FIFO put in a version cannot block us
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(obj, without=()):
    """sha256 of a JSON object's content (canonical form, so key order and spacing do not matter)."""
    data = {k: v for k, v in obj.items() if k not in without}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_json(path):
    if os.path.isdir(path):
        raise GalleryError(f"{path}: damaged gallery version (a directory, not a file)")
    # regular files only, at most MAX_LIST_BYTES (utils/files.py): a FIFO put there cannot block a reader
    return read_input_json(path, "gallery file", MAX_LIST_BYTES, GalleryError, missing=f"{path}: missing",
                           invalid="{path}: damaged gallery version (not valid JSON: {e})")


def is_gallery(index_dir):
    return os.path.isfile(os.path.join(index_dir, CURRENT))


def current_version(index_dir):
    """Name of the published version, e.g. 'v000007'."""
    path = os.path.join(index_dir, CURRENT)
    try:
        with open_regular(path) as f:  # regular files only (utils/files.py): a FIFO cannot block the read
            name = f.read(64).decode("ascii", "replace").strip()
    except NotRegularError as e:
        what = "a directory" if os.path.isdir(path) else e.reason
        raise GalleryError(f"{path}: damaged, {what} instead of the file naming the current version") from None
    except FileNotFoundError:
        hint = (" (a PP-ShiTu index: import it with tools/convert_ppshitu_index.py)"
                if os.path.isfile(os.path.join(index_dir, "id_map.pkl")) else "")
        raise GalleryError(f"{index_dir}: not a gallery, {CURRENT} is missing{hint}") from None
    if not name.startswith("v") or not name[1:].isdigit():
        raise GalleryError(f"{path}: damaged, expected a version name like v000001, got {name!r}")
    return name


def version_dir(index_dir, name):
    return os.path.join(index_dir, VERSIONS, name)


@contextlib.contextmanager
def writer_lock(index_dir):
    """One writer at a time per gallery; a second waits for the first to finish."""
    os.makedirs(index_dir, exist_ok=True)
    with open(os.path.join(index_dir, LOCK), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def new_version_tmpdir(index_dir):
    """A private directory to write the next version into (call with the writer lock held)."""
    root = os.path.join(index_dir, VERSIONS)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".tmp-{os.getpid()}-{time.time_ns()}")
    os.makedirs(tmp)
    return tmp


def next_version_name(index_dir):
    root = os.path.join(index_dir, VERSIONS)
    nums = [int(n[1:]) for n in os.listdir(root) if n.startswith("v") and n[1:].isdigit()] if os.path.isdir(root) else []
    return f"v{max(nums, default=0) + 1:06d}"


def publish(index_dir, tmpdir):
    """Make the fully written `tmpdir` the current version; returns its name.
    Order matters: files are already fsync'd, then the directory is renamed into
    place, then CURRENT is replaced. A crash before the last step changes nothing."""
    for name in os.listdir(tmpdir):
        fsync_path(os.path.join(tmpdir, name))
    fsync_path(tmpdir)
    name = next_version_name(index_dir)
    os.rename(tmpdir, version_dir(index_dir, name))
    fsync_path(os.path.join(index_dir, VERSIONS))
    tmp_current = os.path.join(index_dir, TMP_CURRENT)
    with open(tmp_current, "w", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_current, os.path.join(index_dir, CURRENT))
    fsync_path(index_dir)
    return name


def collect_garbage(index_dir):
    """Remove abandoned versions and all but the newest old one (writer lock held)."""
    root = os.path.join(index_dir, VERSIONS)
    current = current_version(index_dir)
    versions = sorted(n for n in os.listdir(root) if n.startswith("v") and n[1:].isdigit())
    older = [n for n in versions if n < current]
    orphans = [n for n in versions if n > current]  # renamed into place by a writer that died before CURRENT
    doomed = [n for n in os.listdir(root) if n.startswith(".tmp-")] + orphans + older[:max(0, len(older) - KEEP_OLD_VERSIONS)]
    for n in doomed:
        shutil.rmtree(os.path.join(root, n), ignore_errors=True)

