"""The one way ppshitu writes files into a folder a user chose (drawings, results.jsonl, contact
sheets, the duplicates report, eval metrics, the demo's output): it never writes over a file that
ppshitu did not write.

    with OutputGuard(out_dir, "Global.output_dir", inputs=paths) as guard:   # out_dir a file: OutputError
        guard.check_all([results, *drawings])      # refuse before any work (OutputError naming the file)
        guard.write_image(drawing, rgb)
        with guard.open_text(results) as f: ...
        guard.write_json(path, obj)

What ppshitu wrote into a folder is recorded in the folder's `.ppshitu-outputs.json` (MANIFEST): each
file's path relative to the folder, size and sha256. A path may be written when nothing is there, or
when what is there is a regular file the record lists with that very size and content (a re-run
replaces its own earlier drawings). Anything else is refused with OutputError (a PPShiTuError: the
CLIs print it as one line and exit 2): a user's photo, a file placed later under the name of an
earlier output (its content differs from the record), a symbolic link, a directory, a FIFO, an input
of this run, a path under a symbolic link leading out of the folder.

Each write goes to a temporary file beside its destination (`.NAME.XXXXXXXX.tmp`, hidden, no image
extension) and is then moved into place: a new file with link() (fails if a file appeared there in the
meantime; rename() where the file system has no hard links), an own earlier file with rename(). A
reader never sees half a file, and a run that fails leaves the old file. The record is written the
same way, under an flock() of the folder, merged with what other runs recorded meanwhile; it is
saved at most once a second during a run and when the guard is closed. So that a run killed in between
still knows its last files, each write is first announced in the folder's journal (JOURNAL: path, size,
sha256; folded into the record when it is saved): a file matching its record or journal entry is ppshitu's.
"""
import contextlib
import errno
import hashlib
import io
import json
import os
import secrets
import stat
import time

from ..errors import PPShiTuError
from .image import as_rgb_uint8

MANIFEST = ".ppshitu-outputs.json"
# Each write is announced here (one JSON line: path, size, sha256) before its file is moved into place, so a run
# killed between a write and the record's next save (up to FLUSH_SECONDS) still knows the file for its own:
# the re-run replaced nothing and refused its own calibration.json as "ppshitu did not write it". Folded into
# the record, and emptied, when the record is saved.
JOURNAL = ".ppshitu-outputs.journal"
FORMAT = "ppshitu-outputs-1"
FLUSH_SECONDS = 1.0
MAX_MANIFEST_BYTES = 256 << 20


# The files this process reads as its configuration (config.load_config notes each -c file): no OutputGuard of
# the process writes over them, whatever a folder's record says (train -c RUN/RecModel/config.yaml into RUN
# replaced the very config it was reading with the merged one).
RUN_CONFIGS = set()


def note_config(path):
    """Record `path` as a configuration this run reads: never written over by an OutputGuard."""
    RUN_CONFIGS.add(os.path.realpath(os.fspath(path)))


class OutputError(PPShiTuError):
    """ppshitu refuses to write an output: a file it did not write is in the way, or the folder is not one."""


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _sha256_fd(fd):
    h = hashlib.sha256()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)


def _open_regular_nofollow(path):
    """An fd of `path` when it is a regular file (not through a symbolic link), else None."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _read_journal(folder):
    """{relpath: [{size, sha256}]} of the writes announced in `folder`'s JOURNAL; lines that are not such
    entries (a line cut short by a full disk) are left out."""
    fd = _open_regular_nofollow(os.path.join(folder, JOURNAL))
    if fd is None:
        return {}
    try:
        data = os.read(fd, MAX_MANIFEST_BYTES)
    finally:
        os.close(fd)
    out = {}
    for line in data.decode("ascii", "replace").splitlines():
        try:
            e = json.loads(line)
            entry = {"size": e["size"], "sha256": e["sha256"]}
            if isinstance(e["path"], str) and isinstance(entry["size"], int) and isinstance(entry["sha256"], str):
                out.setdefault(e["path"], []).append(entry)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def recorded_outputs(folder):
    """The files (paths relative to `folder`, '/'-separated) the record in `folder` lists as written by
    ppshitu, with those its journal announces; empty when it holds no record, or one that is not ppshitu's.
    (Folder scans never index these.)"""
    try:
        return set(OutputGuard(folder)._record()) | set(_read_journal(folder)) if os.path.isdir(folder) else set()
    except (OutputError, OSError):
        return set()


class OutputGuard:
    """Writes into `folder` (see the module docstring). `what` names the folder in errors (e.g.
    "Global.output_dir"); `inputs`: files this run reads, never written whatever the record says."""

    def __init__(self, folder, what="output folder", inputs=()):
        self.what = what
        self.given = os.fspath(folder)
        self.folder = os.path.abspath(self.given)
        if os.path.lexists(self.folder) and not os.path.isdir(self.folder):
            raise OutputError(f"{what} {self.given} is an existing file, not a folder; choose a folder for the "
                              f"outputs")
        self.inputs = {os.path.realpath(os.fspath(p)) for p in inputs}
        # the record as read (relpath -> {size, sha256}); one that is not ppshitu's is refused now, not after the work
        self._entries = self._read_record() if os.path.isdir(self.folder) else None
        self._written = {}        # what this guard wrote since the last flush
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ checks
    def _rel(self, path):
        path = os.path.abspath(os.fspath(path))
        rel = os.path.relpath(path, self.folder)
        if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise OutputError(f"{path} is not inside {self.what} {self.given}")
        return path, rel.replace(os.sep, "/")

    def _record(self):
        if self._entries is None:
            self._entries = self._read_record()
        return self._entries

    def _read_record(self):
        path = os.path.join(self.folder, MANIFEST)
        if not os.path.lexists(path):
            return {}
        fd = _open_regular_nofollow(path)
        if fd is None:
            raise OutputError(f"{path} is not ppshitu's record of the files it wrote (not a regular file); move it "
                              f"away or choose another {self.what}")
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, MAX_MANIFEST_BYTES + 1) if size <= MAX_MANIFEST_BYTES else b""
        finally:
            os.close(fd)
        try:
            record = json.loads(data.decode("utf-8"))
            files = record["files"] if record.get("format") == FORMAT else None
            if not isinstance(files, dict):
                raise ValueError(record.get("format"))
            return {str(k): v for k, v in files.items()
                    if isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)}
        except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
            raise OutputError(f"{path} is not ppshitu's record of the files it wrote ({FORMAT}); move it away or "
                              f"choose another {self.what}") from None

    def _ours(self, path, rel, st):
        """True when the regular file at `path` is one this record (or the journal of writes not yet recorded)
        lists with its size and content."""
        entries = [e for e in (self._written.get(rel), self._record().get(rel)) if e]
        entries += _read_journal(self.folder).get(rel, []) if st.st_size not in {e["size"] for e in entries} else []
        if st.st_size not in {e["size"] for e in entries}:
            return False
        fd = _open_regular_nofollow(path)
        if fd is None:
            return False
        try:
            digest = _sha256_fd(fd)
        finally:
            os.close(fd)
        return any(e["sha256"] == digest for e in entries + _read_journal(self.folder).get(rel, []))

    def check(self, path):
        """Whether `path` may be written: False when nothing is there (a new file), True when an earlier
        output of ppshitu is there (to be replaced); OutputError naming it otherwise."""
        path, rel = self._rel(path)
        if rel == MANIFEST:
            raise OutputError(f"{path}: ppshitu keeps its record of written files under that name")
        if os.path.realpath(path) in self.inputs | RUN_CONFIGS:
            which = "the config (-c) of this run" if os.path.realpath(path) in RUN_CONFIGS else "an input of this run"
            raise OutputError(f"{self.what} {self.given}: {path} is {which}; it is never written over "
                              f"(choose another {self.what})")
        real_folder = os.path.realpath(self.folder)
        parent = os.path.realpath(os.path.dirname(path))
        if parent != real_folder and not parent.startswith(real_folder.rstrip(os.sep) + os.sep):
            raise OutputError(f"{path}: a symbolic link in its folder leads out of {self.what} {self.given} "
                              f"(to {parent}); not written")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except NotADirectoryError:
            raise OutputError(f"{path}: a file is in the way of its folder; not written") from None
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{path} exists and is {_kind(st.st_mode)}, not a file ppshitu wrote; not written "
                              f"(move it away or choose another {self.what})")
        if not self._ours(path, rel, st):
            raise OutputError(f"{path} already exists and ppshitu did not write it (it is not in {self.what}'s "
                              f"{MANIFEST} as it is now); not overwritten: move it away or choose another "
                              f"{self.what}")
        return True

    def is_own(self, path):
        """True when `path` holds a file ppshitu wrote (recorded, its content unchanged)."""
        try:
            return self.check(path)
        except OutputError:
            return False

    def check_all(self, paths):
        """check() each path (refuse a run before it does any work)."""
        for p in paths:
            self.check(p)

    # ------------------------------------------------------------------ writes
    def _makedirs(self, folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:
            raise OutputError(f"cannot create the folder {folder}: a file of that name (or on its path) is in the "
                              f"way") from None
        except NotADirectoryError:
            raise OutputError(f"cannot create the folder {folder}: a file on its path is in the way") from None
        except OSError as e:
            raise OutputError(f"cannot create the folder {folder}: {e.strerror or e}") from None

    def _temp(self, path):
        folder, name = os.path.split(path)
        self._makedirs(folder)
        for _ in range(100):
            tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
            try:  # mode 0666 & ~umask, as a plain open() makes it
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileExistsError:
                continue
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
            return tmp, fd
        raise OutputError(f"cannot write {path}: no free temporary name beside it")

    def _install(self, tmp, path, rel):
        """Move the finished temporary file onto `path` (see the module docstring) and record it."""
        try:
            replace = self.check(path)
            with open(tmp, "rb") as f:
                digest, size = hashlib.sha256(), 0
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
            self._announce(rel, size, digest.hexdigest())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails if anything appeared at `path` since the check
                except FileExistsError:
                    raise OutputError(f"{path} appeared while ppshitu was writing it; not overwritten") from None
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS,
                                       errno.EXDEV, errno.EACCES):
                        raise
                    if os.path.lexists(path):  # no hard links here (FAT, some network file systems)
                        raise OutputError(f"{path} appeared while ppshitu was writing it; not overwritten") from None
                    os.replace(tmp, path)
                else:
                    os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._written[rel] = {"size": size, "sha256": digest.hexdigest()}
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def write_bytes(self, path, data):
        """Write `data` to `path` (atomically; refused as check() says); returns `path`."""
        given = os.fspath(path)
        path, rel = self._rel(given)
        self.check(path)  # before any temporary file is made
        tmp, fd = self._temp(path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
            raise
        self._install(tmp, path, rel)
        return given

    def write_text(self, path, text):
        """UTF-8; a lone surrogate (a byte of a file name that is not UTF-8) written `\\udcNN`, which in JSON is
        the string escape json.loads reads back as that name (utils/text.py)."""
        return self.write_bytes(path, text.encode("utf-8", "backslashreplace"))

    def write_json(self, path, obj, **dump_options):
        return self.write_text(path, json.dumps(obj, **dump_options))

    def write_image(self, path, rgb, **save_options):
        """Encode an RGB uint8 image (format from the extension, PIL's `save_options` such as quality)
        and write it; returns the path."""
        from PIL import Image

        rgb = as_rgb_uint8(rgb)
        buf = io.BytesIO()
        ext = os.path.splitext(os.fspath(path))[1].lower()
        try:
            fmt = Image.registered_extensions().get(ext)
            if fmt is None:
                raise ValueError(f"unknown file extension {ext!r}")
            Image.fromarray(rgb).save(buf, format=fmt, **save_options)
        except (OSError, ValueError, KeyError) as e:
            raise PPShiTuError(f"cannot write image {path}: {e}") from None
        return self.write_bytes(path, buf.getvalue())

    def write_with(self, path, write_fn):
        """Write `path` by calling `write_fn(temporary_path)` (a library's own saver, e.g. paddle.save), then
        moving the result into place as write_bytes does (refused as check() says); returns `path`."""
        given = os.fspath(path)
        path, rel = self._rel(given)
        self.check(path)
        tmp, fd = self._temp(path)
        os.close(fd)
        try:
            write_fn(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._install(tmp, path, rel)
        return given

    def adopt(self, path):
        """Record the regular file at `path` as ppshitu's (its content as it is now), so later writes may replace
        it: only on the user's explicit word (e.g. resuming training from the checkpoint there)."""
        path, rel = self._rel(path)
        fd = _open_regular_nofollow(path)
        if fd is None:
            return
        try:
            self._written[rel] = {"size": os.fstat(fd).st_size, "sha256": _sha256_fd(fd)}
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def open_text(self, path):
        """A text file to write (UTF-8) that appears at `path` only once the block ends without error."""
        path, rel = self._rel(path)
        self.check(path)
        tmp, fd = self._temp(path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:  # (as write_text)
                yield f
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._install(tmp, path, rel)

    # ------------------------------------------------------------------ the record
    @contextlib.contextmanager
    def _locked(self):
        """The folder's flock (every change of the record or the journal is made under it)."""
        import fcntl

        self._makedirs(self.folder)
        dfd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(dfd)  # (releases the lock)

    def _announce(self, rel, size, sha):
        """Append the write about to happen to the journal (JOURNAL), one line in one write()."""
        line = json.dumps({"path": rel, "size": size, "sha256": sha}, ensure_ascii=True) + "\n"
        with self._locked():
            fd = os.open(os.path.join(self.folder, JOURNAL),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                         0o666)
            try:
                os.write(fd, line.encode("ascii"))
            finally:
                os.close(fd)

    def flush(self):
        """Save what this guard wrote into the folder's record (merged with the record on disk)."""
        self._last_flush = time.monotonic()
        if not self._written:
            return
        with self._locked():
            entries = self._read_record()  # another run may have recorded files meanwhile
            entries.update(self._written)
            path = os.path.join(self.folder, MANIFEST)
            tmp, fd = self._temp(path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"format": FORMAT, "about": "files ppshitu wrote into this folder: it replaces "
                               "only these, and only while their content is as recorded",
                               "files": dict(sorted(entries.items()))}, f, indent=1, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._fold_journal(entries, set(self._written))
        self._entries, self._written = entries, {}

    def _fold_journal(self, entries, done):
        """Keep in the journal only the announced writes the record does not list as they are and this guard did
        not just record (`done`): another run's writes in progress, or files a killed run left. The lock is held."""
        journal = os.path.join(self.folder, JOURNAL)
        pending = [(rel, e) for rel, es in _read_journal(self.folder).items() if rel not in done
                   for e in es if entries.get(rel) != e]
        if not pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(journal)
            return
        tmp, fd = self._temp(journal)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.writelines(json.dumps({"path": rel, **e}, ensure_ascii=True) + "\n" for rel, e in pending)
        os.replace(tmp, journal)

    def close(self):
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()


def write_thumbnail(src, dst, guard, size):
    """Write a `size`-pixel thumbnail of the image file `src` to `dst` through `guard` (read by utils.image:
    regular files only, under the pixel and byte limits, EXIF orientation applied); False when it cannot be
    read. The reports' one thumbnail maker (duplicates, gallery doctor)."""
    import numpy as np
    from PIL import Image

    from .image import ImageReadError, read_image
    try:
        im = Image.fromarray(read_image(src, min_side=size))
    except (ImageReadError, OSError):
        return False
    im.thumbnail((size, size))
    guard.write_image(dst, np.asarray(im), quality=85)
    return True


def file_uri(path):
    """A file:// link to `path` for a report page ("" where the path has none)."""
    import pathlib

    try:
        return pathlib.Path(os.path.abspath(path)).as_uri()
    except ValueError:
        return ""
