"""The label store: one SQLite file per gallery version, id -> label, image path,
optional box and time added, plus the ids removed from an index that cannot
delete (HNSW), which searches filter out until the next compaction."""
import sqlite3
import time

from .errors import GalleryError

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    path TEXT,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_label ON items(label);
CREATE INDEX IF NOT EXISTS items_path ON items(path);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY);
"""
_CHUNK = 900  # SQLite's default limit on bound parameters is 999


def open_writable(path):
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(SCHEMA)
    return con


def open_readonly(path):
    """Published versions never change, so SQLite may skip locking and journals."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        con.execute("SELECT 1 FROM items LIMIT 1")
    except sqlite3.DatabaseError as e:
        raise GalleryError(f"{path}: cannot read the label store ({e})") from None
    return con


def _chunks(values):
    values = list(values)
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def _rows_in(con, sql, values):
    """Rows of `sql` whose `IN ({marks})` is bound to `values`, a chunk at a time."""
    for chunk in _chunks(values):
        yield from con.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)


def insert_items(con, ids, labels, paths, boxes):
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [(int(i), str(lab), p, *(b if b is not None else (None,) * 4), now)
            for i, lab, p, b in zip(ids, labels, paths, boxes)]
    with con:
        con.execute("BEGIN")
        con.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?)", rows)


def delete_items(con, ids, tombstone):
    with con:
        con.execute("BEGIN")
        for chunk in _chunks(int(i) for i in ids):
            marks = ",".join("?" * len(chunk))
            con.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
            if tombstone:
                con.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(i,) for i in chunk])


def clear_tombstones(con):
    with con:
        con.execute("DELETE FROM tombstones")


def tombstones(con):
    return [r[0] for r in con.execute("SELECT id FROM tombstones ORDER BY id")]


def ids_where(con, column, values):
    """Ids whose `column` (label or path) is one of `values`."""
    assert column in ("label", "path")
    return sorted(r[0] for r in _rows_in(con, f"SELECT id FROM items WHERE {column} IN ({{marks}})", values))


def existing_paths(con, paths):
    return {r[0] for r in _rows_in(con, "SELECT path FROM items WHERE path IN ({marks})",
                                   [p for p in paths if p is not None])}


def labels_of(con, ids):
    """{id: label} for the given ids."""
    return dict(_rows_in(con, "SELECT id, label FROM items WHERE id IN ({marks})", [int(i) for i in ids]))


def label_counts(con):
    return dict(con.execute("SELECT label, COUNT(*) FROM items GROUP BY label ORDER BY label"))


def records(con, ids=None):
    """Full rows as dicts (all, or for `ids`), ordered by id."""
    cols = ("id", "label", "path", "x1", "y1", "x2", "y2", "added_at")
    if ids is None:
        rows = con.execute("SELECT * FROM items ORDER BY id").fetchall()
    else:
        rows = sorted(_rows_in(con, "SELECT * FROM items WHERE id IN ({marks})", [int(i) for i in ids]))
    out = []
    for r in rows:
        rec = dict(zip(cols, r))
        box = [rec.pop(c) for c in ("x1", "y1", "x2", "y2")]
        rec["box"] = None if box[0] is None else box
        out.append(rec)
    return out


def count(con):
    return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
