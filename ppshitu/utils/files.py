"""Opening the files a user names: regular files only, and never more than a stated number of bytes.

Every file ppshitu reads because a user named it (on the command line, in a config, in a list) is opened
by `open_regular`: images by utils/image.py's `open_image_file` (its byte limit follows the pixel limit),
every other input by `open_input` / `open_input_text` / `read_input_text` below, each kind with its cap:

    MAX_CONFIG_BYTES      64 MiB  configs (-c, a model's inference.yml), JSON records (a checkpoint's
                                  .pdstates, the similarity calibration, duplicate decisions)
    MAX_LIST_BYTES         1 GiB  list files: image lists, gallery lists, training lists, label lists
    MAX_ANNOTATION_BYTES   1 GiB  annotation JSON: COCO detection sets, eval_system's --scenes

(COCO's largest, instances_train2017.json, is 448 MB; a list of 10 million images is ~0.6 GB.)

Why: a FIFO blocks its reader forever (`mkfifo f.yaml; tools/similarity.py -c f.yaml a b` hung; so did
`IndexProcess.data_file=<fifo>`), and a device is read without end (`data_file=/dev/zero` grew until
MemoryError). So, as for images: stat() first (a FIFO or a device is never opened at all), open with
O_NONBLOCK (a FIFO swapped in meanwhile cannot block the open), fstat() the opened descriptor (what is
read is what was checked), refuse a file larger than the cap, and count the bytes while reading (a file
that grows past the cap after it was opened is refused too). A symbolic link to a regular file is fine.

Refusals name the file and why: "config file f.yaml: not a regular file (FIFO)", "list file l.txt: larger
than 1 GiB, the most ppshitu reads from a list file (ppshitu/utils/files.py); it has ... bytes". They are
raised as the caller's error class (`error=`, a PPShiTuError: one line from every CLI), with `.errno` (the
system's error number, or None), `.reason` and `.path` set.
"""
import errno as _errno
import io
import json
import os
import stat

from ..errors import PPShiTuError

MAX_CONFIG_BYTES = 64 << 20
MAX_LIST_BYTES = 1 << 30
MAX_ANNOTATION_BYTES = 1 << 30

OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class InputFileError(PPShiTuError, OSError):
    """An input file is missing, not a regular file, too large or unreadable (`errno`, `reason`, `path` set)."""


class NotRegularError(OSError):
    """The low-level refusal of open_regular: the path is not a regular file (`reason` says what it is)."""

    def __init__(self, path, reason):
        super().__init__(reason)
        self.filename, self.reason = path, reason


class TooLargeError(OSError):
    """The low-level refusal of open_regular / CappedReader: more bytes than the cap (`size`: None when the file
    grew past the cap while read)."""

    def __init__(self, path, size, limit):
        super().__init__(f"larger than {limit} bytes")
        self.filename, self.size, self.limit = path, size, limit


def file_kind(mode):
    """What a non-regular file is, from its st_mode."""
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def not_regular_reason(path, st=None):
    """None when `path` (symbolic links followed) is a regular file, else why not, e.g. "not a regular
    file (FIFO)", "not a regular file (symbolic link to a character device)", or the stat error."""
    try:
        st = st if st is not None else os.stat(path)
    except (OSError, ValueError) as e:
        return getattr(e, "strerror", None) or str(e) or type(e).__name__
    if stat.S_ISREG(st.st_mode):
        return None
    kind = file_kind(st.st_mode)
    if os.path.islink(path):
        kind = f"symbolic link to a {kind}"
    return f"not a regular file ({kind})"


def open_regular(path, max_bytes=None):
    """The unbuffered binary file object of the regular file `path` (the caller closes it), at most
    `max_bytes` long when opened (None: any size, e.g. model weights; read through CappedReader to keep to a
    cap while reading). Raises the stat / open OSError as it is (FileNotFoundError, ...), NotRegularError,
    TooLargeError; ValueError for a NUL byte in the path."""
    st = os.stat(path)  # first: never open a device or a FIFO at all
    why = not_regular_reason(path, st)
    if why:
        raise NotRegularError(path, why)
    if max_bytes is not None and st.st_size > max_bytes:
        raise TooLargeError(path, st.st_size, max_bytes)
    fd = os.open(path, OPEN_FLAGS)  # O_NONBLOCK: a FIFO put there since the stat cannot block us
    try:
        st = os.fstat(fd)  # what was opened, not what the path named a moment ago
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError(path, f"not a regular file ({file_kind(st.st_mode)})")
        if max_bytes is not None and st.st_size > max_bytes:
            raise TooLargeError(path, st.st_size, max_bytes)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


class CappedReader(io.RawIOBase):
    """A raw binary stream over `raw` that raises TooLargeError once more than `limit` bytes were read."""

    def __init__(self, raw, path, limit):
        super().__init__()
        self.raw, self.path, self.limit, self.total = raw, path, limit, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        view = memoryview(buffer)
        n = self.raw.readinto(view[:max(1, min(len(view), self.limit + 1 - self.total))])
        self.total += n or 0
        if self.total > self.limit:
            raise TooLargeError(self.path, None, self.limit)
        return n

    def close(self):
        try:
            self.raw.close()
        finally:
            super().close()


def _size(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _refusal(e, path, what, max_bytes, error, missing):
    """The caller's error for open_regular's / a read's OSError `e`."""
    if isinstance(e, NotRegularError):
        reason = e.reason
    elif isinstance(e, TooLargeError):
        reason = (f"larger than {_size(max_bytes)}, the most ppshitu reads from a {what} (ppshitu/utils/files.py); "
                  f"{'it grew past that while read' if e.size is None else f'it has {e.size} bytes'}")
    else:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    number = getattr(e, "errno", None) if not isinstance(e, (NotRegularError, TooLargeError)) else None
    if number == _errno.ENOENT and missing:
        message = missing
    else:
        message = f"{what} {path}: {reason}"
    err = error(message)
    # (not `filename`: on an OSError subclass it would replace the message in str())
    err.errno, err.reason, err.path = number, reason, os.fspath(path) if isinstance(path, os.PathLike) else path
    return err


def open_input(path, what="input file", max_bytes=MAX_CONFIG_BYTES, error=InputFileError, missing=None):
    """A binary stream of the regular file `path` that never yields more than `max_bytes` (the caller closes it).
    Refusals (missing, not a regular file, larger than `max_bytes`, unreadable; also while reading) raise
    `error` naming `what` and the file (`missing`: the message when it does not exist)."""
    try:
        raw = open_regular(path, max_bytes)
    except (OSError, ValueError) as e:
        raise _refusal(e, path, what, max_bytes, error, missing) from None
    return _Guarded(CappedReader(raw, path, max_bytes), path, what, max_bytes, error)


class _Guarded(io.BufferedReader):
    """A BufferedReader whose read errors (the cap, EIO) become the caller's error class."""

    def __init__(self, raw, path, what, max_bytes, error):
        super().__init__(raw, buffer_size=1 << 16)
        self._why = (path, what, max_bytes, error)

    def _call(self, method, *args):
        try:
            return method(*args)
        except OSError as e:
            path, what, max_bytes, error = self._why
            raise _refusal(e, path, what, max_bytes, error, None) from None

    def read(self, size=-1):
        return self._call(super().read, size)

    def read1(self, size=-1):
        return self._call(super().read1, size)

    def readinto(self, buffer):
        return self._call(super().readinto, buffer)

    def readinto1(self, buffer):
        return self._call(super().readinto1, buffer)

    def readline(self, size=-1):
        return self._call(super().readline, size)

    def peek(self, size=0):
        return self._call(super().peek, size)


def open_input_text(path, what="input file", max_bytes=MAX_CONFIG_BYTES, error=InputFileError, missing=None,
                    encoding="utf-8", errors="strict"):
    """open_input as text (universal newlines, as open() reads); decoding errors stay UnicodeDecodeError."""
    return io.TextIOWrapper(open_input(path, what, max_bytes, error, missing), encoding=encoding, errors=errors)


def read_input_text(path, what="input file", max_bytes=MAX_CONFIG_BYTES, error=InputFileError, missing=None,
                    encoding="utf-8"):
    """The whole text of the input file `path` (open_input_text's checks)."""
    with open_input_text(path, what, max_bytes, error, missing, encoding) as f:
        return f.read()


def read_input_json(path, what="input file", max_bytes=MAX_CONFIG_BYTES, error=InputFileError, missing=None,
                    invalid="{path}: not valid JSON ({e})"):
    """The JSON document in the input file `path` (open_input_text's checks); text that is not UTF-8 JSON is
    `error(invalid)`, formatted with the path and the parser's reason."""
    try:
        text = read_input_text(path, what, max_bytes, error, missing)
    except UnicodeDecodeError as e:  # (a damaged byte: not UTF-8)
        raise error(invalid.format(path=path, e=e)) from None
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError
        raise error(invalid.format(path=path, e=e)) from None


def read_input_bytes(path, what="input file", max_bytes=MAX_CONFIG_BYTES, error=InputFileError, missing=None):
    """The whole content of the input file `path` (open_input's checks)."""
    with open_input(path, what, max_bytes, error, missing) as f:
        return f.read()


def check_input_file(path, what="input file", error=InputFileError, missing=None):
    """Refuse `path` unless it is (a symbolic link to) a regular file, without opening it: the error names it
    and says why ("not a regular file (FIFO)", the system's reason, or `missing`)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise _refusal(e, path, what, 0, error, missing) from None
    why = not_regular_reason(path, st)
    if why:
        raise _refusal(NotRegularError(path, why), path, what, 0, error, missing)
    return path
