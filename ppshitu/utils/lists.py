"""The one way ppshitu reads a list file: gallery lists (`relpath<TAB>label`), remove lists (paths or
labels), image lists (predict_system's Global.infer_imgs, quantize's calibration images) and training
lists (`relpath label [uid]`) all keep the same rules:

- UTF-8 text; a byte-order mark at its start is ignored; a file that is not UTF-8 is refused;
- one entry a line: a line ends at `\\n`, `\\r\\n` or `\\r` (nothing else: a name may hold any other
  character); spaces around an entry are not part of it;
- blank lines are left out, and so are comment lines: those whose first non-blank character is `#`
  (a file whose name starts with `#` is listed as `./#name.jpg`);
- a NUL byte means the file is not a list at all (a binary file given by mistake): refused, naming the line;
- the file is read by utils/files.py's opener: a regular file (a FIFO, a device are refused), at most
  MAX_LIST_BYTES;
- paths are written with '/': on Linux and macOS a backslash is a character of a file name, not a separator
  (`images\\a.jpg` is one file name there); a listed file that is missing while its '/' spelling exists is
  said so (backslash_hint).

    for no, line in read_list_lines(path, ConfigError, "IndexProcess.data_file: "): ...
"""
import os

from .files import MAX_LIST_BYTES, read_input_text

COMMENT = "#"


def is_comment(line):
    """Whether a list line is a comment (its first non-blank character is '#')."""
    return line.lstrip().startswith(COMMENT)


def backslash_hint(path):
    """For a missing `path` holding backslashes whose '/' spelling exists: the words that say so; else ''."""
    path = os.fspath(path)
    if os.sep != "/" or "\\" not in path:
        return ""
    alt = path.replace("\\", "/")
    if not os.path.lexists(alt) or os.path.lexists(path):
        return ""
    return (f" (a backslash is part of a file name here, not a separator; {alt} exists: write the path with "
            f"'/')")


def read_list_lines(path, error, what="", missing=None):
    """[(line number from 1, the line stripped)] of a list file's entries (module docstring: blank and
    comment lines left out). The file is read by utils/files.py's opener (regular files only, at most
    MAX_LIST_BYTES). Raises `error` (its message prefixed by `what`, e.g. "IndexProcess.data_file: ";
    `missing`: the message when the file does not exist) when it cannot be read, is not UTF-8, or holds a
    NUL byte."""
    path = os.fspath(path)
    try:  # universal newlines: \r\n and \r end a line too
        text = read_input_text(path, f"{what}list file", MAX_LIST_BYTES, error, missing=missing,
                               encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{what}{path}: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); "
                    f"save the list as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for no, line in enumerate(lines, 1):
        if "\0" in line:  # no file name holds one: a binary or damaged file given as the list
            raise error(f"{what}{path}:{no}: contains a NUL byte; a list file is text, one entry a line")
        line = line.strip()
        if line and not is_comment(line):
            out.append((no, line))
    return out
