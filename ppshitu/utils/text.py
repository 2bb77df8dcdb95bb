"""Text that goes into one-line-per-file output (predict_system, index_folder, find_duplicates, search,
similarity): a file name or label is shown as it is unless it holds a character that would break the
line or the terminal, then as a Python string literal (quoted, with \\n, \\t, \\x1b, \\u2028, \\udcff ...
escapes), so each file stays on one line, a tab-separated column stays one column, and no two names are
shown alike.

Escaped: control characters (newline, carriage return, tab, escape sequences ...), line and paragraph
separators, and lone surrogates (the bytes of a file name that is not UTF-8, which print() cannot
encode). A name that starts with a quote is quoted too, so that a plain name is never read as a literal.
JSON output needs none of this (json.dumps escapes).

File names that are not UTF-8 (undecodable names), one rule end to end. Python reads such a name from
the OS with its undecodable bytes as lone surrogates (U+DC80..U+DCFF, PEP 383: `os.fsdecode`), which it
opens fine but which SQLite, a gallery, or UTF-8 text cannot hold. So:

- in memory a name stays as the OS gave it (files are opened by it);
- stored as text -- gallery keys and labels, the folder state (SQLite) -- it is `name_text(name)`:
  unchanged when it is valid Unicode, else each undecodable byte written `\\xNN` (`bad\\xff.jpg`).
  `name_from_text` reverses it, and library.common.resolve opens the file such a key stands for (a file
  literally named with that spelling, if there is one, comes first: folder scans never give one key to
  two files);
- written into JSON or other text outputs (results.jsonl, reports), the lone surrogates become `\\udcNN`
  escapes (utils/outputs.py writes UTF-8 with errors="backslashreplace": in JSON that is the string
  escape, which json.loads reads back as the very name os.fsencode turns into the original bytes);
- printed, `printable()` (above).
"""
import re
import unicodedata

_UNSAFE = {"Cc", "Cs", "Zl", "Zp"}
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def needs_escape(text):
    return text[:1] in ("'", '"') or any(unicodedata.category(ch) in _UNSAFE for ch in text)


# Characters no label may hold (where labels enter: the service's check_label, gallery lists): control
# characters (tab, newline, escape, C1 ...), format characters (zero-width space U+200B, bidi overrides
# U+202E, U+FEFF ...: invisible, so two labels that look alike would be two classes, or a label would
# show reversed), line/paragraph separators and lone surrogates.
_LABEL_FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


MAX_LABEL_CHARS = 200  # a class name; a gallery list's 10 MB "label" (a line without its newline) was taken whole


def label_problem(label, allow=""):
    """None when `label` holds no forbidden character (_LABEL_FORBIDDEN) but those in `allow` and is at most
    MAX_LABEL_CHARS long, else a sentence naming the first problem. (Gallery lists allow a tab: there a label
    is all after the first delimiter.)"""
    if len(label) > MAX_LABEL_CHARS:
        return f"at most {MAX_LABEL_CHARS} characters, got {len(label)}"
    for ch in label:
        if ch in allow:
            continue
        cat = unicodedata.category(ch)
        if cat in _LABEL_FORBIDDEN:
            kind = "format" if cat == "Cf" else "control"
            return (f"{kind} characters (tabs, newlines, zero-width or bidirectional marks, ...) are not "
                    f"allowed, got U+{ord(ch):04X}")
    if label and all(unicodedata.category(ch)[0] in "MZ" for ch in label):
        return "a label needs a visible character (it holds only combining marks or spaces)"
    return None


def printable(text):
    """`text` (a path, a label) safe on one line of output: itself, or its repr() (module docstring)."""
    if text is None:
        return ""
    text = str(text)
    return repr(text) if needs_escape(text) else text


def nfc(text):
    """`text` in Unicode's composed form (NFC): `te\u0301al` and `t\u00e9al` are one label, one gallery key.
    Labels and listed paths are normalised where they enter (gallery lists, folder labels, the service)."""
    return unicodedata.normalize("NFC", text) if isinstance(text, str) and not text.isascii() else text


def is_undecodable(name):
    """Whether `name` holds lone surrogates (the undecodable bytes of a file name, PEP 383)."""
    return any("\ud800" <= ch <= "\udfff" for ch in name)


def name_text(name):
    """A file name or path from the OS as valid Unicode text (module docstring): itself, or with each
    undecodable byte (a lone surrogate U+DC80..U+DCFF) written `\\xNN` (any other lone surrogate `\\uXXXX`)."""
    if name is None or not is_undecodable(name):
        return name
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else
                   (f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch) for ch in name)


def name_from_text(text):
    """The name name_text made `text` from: each `\\xNN` (NN 80..ff) back to its undecodable byte (a lone
    surrogate). A text without such escapes is returned as it is."""
    if text is None or "\\x" not in text:
        return text
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)
