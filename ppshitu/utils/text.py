"""Text that goes into one-line-per-file output (predict_system, index_folder, find_duplicates, search,
similarity): a file name or label is shown as it is unless it holds a character that would break the
line or the terminal, then as a Python string literal (quoted, with \\n, \\t, \\x1b, \\u2028, \\udcff ...
escapes), so each file stays on one line, a tab-separated column stays one column, and no two names are
shown alike.

Escaped: control characters (newline, carriage return, tab, escape sequences ...), line and paragraph
separators, and lone surrogates (the bytes of a file name that is not UTF-8, which print() cannot
encode). A name that starts with a quote is quoted too, so that a plain name is never read as a literal.
JSON output needs none of this (json.dumps escapes).
"""
import unicodedata

_UNSAFE = {"Cc", "Cs", "Zl", "Zp"}


def needs_escape(text):
    return text[:1] in ("'", '"') or any(unicodedata.category(ch) in _UNSAFE for ch in text)


def printable(text):
    """`text` (a path, a label) safe on one line of output: itself, or its repr() (module docstring)."""
    if text is None:
        return ""
    text = str(text)
    return repr(text) if needs_escape(text) else text
