"""Duplicate finding over a gallery (tools/find_duplicates.py).

Exact duplicates share a content hash (sha256). Near-duplicates are found through the gallery's own
index: each item's `k` nearest neighbours (batched searches, so the cost grows as n * k, not n^2) are
candidates, and a candidate pair is linked by the rule (`NearRule`):

    cos >= cosine                                   (embedding alone), or
    cos >= candidate and pHash distance <= max_hamming   (embedding + perceptual hash, when set)

The pHash is computed only for the images of such candidate pairs. Groups are the connected components
of exact and near links (union-find). Each group names the copy to keep (`keep`: the largest file, or
the first path, or the oldest) and the others; nothing is ever moved unless asked, and never the kept
copy.
"""
import logging
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, PPShiTuError

log = logging.getLogger("ppshitu.library")
KEEP_RULES = ("largest", "first", "oldest")
SEARCH_CHUNK = 1024
PHASH_DRAFT = (256, 256)   # JPEGs are decoded at a reduced scale no smaller than this (pHash looks at 32x32)


@dataclass(frozen=True)
class NearRule:
    cosine: float                 # linked on the embedding alone at or above this
    candidate: float = None       # with max_hamming: linked at or above this when the pHashes agree
    max_hamming: int = None
    source: str = ""

    @property
    def uses_phash(self):
        return self.candidate is not None and self.max_hamming is not None

    @property
    def floor(self):
        return min(self.cosine, self.candidate) if self.uses_phash else self.cosine

    def describe(self):
        text = f"cosine >= {self.cosine:.3f}"
        if self.uses_phash:
            text += f", or cosine >= {self.candidate:.3f} and pHash distance <= {self.max_hamming}"
        return text

    def as_dict(self):
        return {"cosine": self.cosine, "candidate": self.candidate, "max_hamming": self.max_hamming,
                "source": self.source, "text": self.describe()}


def phash_image(im):
    """64-bit perceptual hash (ImageHash's phash) of a PIL image, as 64 booleans."""
    import imagehash

    return np.asarray(imagehash.phash(im.convert("RGB")).hash, bool).reshape(-1)


def phash_file(path):
    """phash_image of a file (JPEGs decoded at reduced scale), or None when it cannot be read (read by
    utils.image's one opener: regular files only, within the byte limit)."""
    import io

    from PIL import Image

    from ..utils.image import read_image_bytes

    try:
        with Image.open(io.BytesIO(read_image_bytes(path))) as im:
            im.draft("RGB", PHASH_DRAFT)
            return phash_image(im)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class LazyHashes:
    """pHashes of items' files, computed on first use."""

    def __init__(self, items):
        self.items, self.cache, self.computed = items, {}, 0

    def __call__(self, i):
        if i not in self.cache:
            file = self.items[i].get("file")
            self.cache[i] = phash_file(file) if file else None
            self.computed += 1
        return self.cache[i]


class UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self):
        by = {}
        for i in range(len(self.parent)):
            by.setdefault(self.find(i), []).append(i)
        return [m for m in by.values() if len(m) > 1]


def to_cosine(scores, higher_is_better):
    """Gallery scores as cosines: IP scores are; L2 on unit vectors is 2 - 2 cos."""
    scores = np.asarray(scores, np.float64)
    return scores if higher_is_better else 1.0 - scores / 2.0


def near_pairs(gallery, vectors, ids, rule, k=10, hashes=None):
    """{(i, j): {cosine, phash, by}} for i < j, positions into `ids`, where j is among i's k nearest
    (or i among j's) and the pair passes `rule` (a NearRule, or a cosine). `vectors` [n, D] are the
    items' own vectors; `hashes(i)` gives item i's pHash (needed when the rule uses one)."""
    if not isinstance(rule, NearRule):
        rule = NearRule(float(rule))
    pos = {int(g): i for i, g in enumerate(ids)}
    candidates = {}
    for start in range(0, len(ids), SEARCH_CHUNK):
        q = np.asarray(vectors[start:start + SEARCH_CHUNK], np.float32)
        _, scores, found = gallery.search(q, int(k) + 1)  # +1: the item itself
        cos = to_cosine(scores, gallery.higher_is_better)
        for row in range(len(q)):
            i = start + row
            for g, c in zip(found[row], cos[row]):
                j = pos.get(int(g))
                if j is None or j == i or not np.isfinite(c) or c < rule.floor:
                    continue
                key = (min(i, j), max(i, j))
                candidates[key] = max(candidates.get(key, -1.0), float(c))
    pairs = {}
    for (i, j), c in candidates.items():
        if c >= rule.cosine:
            pairs[(i, j)] = {"cosine": c, "phash": None, "by": "embedding"}
        elif rule.uses_phash and hashes is not None:
            a, b = hashes(i), hashes(j)
            if a is not None and b is not None:
                d = int((a != b).sum())
                if d <= rule.max_hamming:
                    pairs[(i, j)] = {"cosine": c, "phash": d, "by": "embedding+phash"}
    return pairs


def exact_pairs(hashes):
    """[(i, j)]: positions with the same (non-empty) content hash, each linked to the first of them."""
    first, out = {}, []
    for i, h in enumerate(hashes):
        if not h:
            continue
        if h in first:
            out.append((first[h], i))
        else:
            first[h] = i
    return out


def group_items(items, vectors, near, exact, keep="largest"):
    """Groups (dicts) from the items' links; members ordered keep-first."""
    if keep not in KEEP_RULES:
        raise ConfigError(f"--keep must be one of {list(KEEP_RULES)}, got {keep!r}")
    uf = UnionFind(len(items))
    for i, j in exact:
        uf.union(i, j)
    for i, j in near:
        uf.union(i, j)

    def order(i):
        it = items[i]
        if keep == "largest":
            return (-(it.get("size") or 0), it["path"] or "")
        if keep == "oldest":
            return (it.get("mtime_ns") or 0, it["path"] or "")
        return (it["path"] or "",)
    links_of = {}
    for (i, j), link in sorted(near.items()):
        links_of.setdefault(uf.find(i), []).append({"a": items[i]["path"], "b": items[j]["path"],
                                                    "cosine": round(link["cosine"], 4), "phash": link["phash"],
                                                    "by": link["by"]})
    groups = []
    for members in uf.groups():
        members = sorted(members, key=order)
        keeper = members[0]
        hashes = {items[m].get("sha256") for m in members}
        keep_sha = items[keeper].get("sha256")
        rows = []
        for m in members:
            it = items[m]
            rows.append({**it, "cosine_to_keep": round(float(np.dot(vectors[m], vectors[keeper])), 4),
                         "same_bytes_as_keep": bool(keep_sha) and it.get("sha256") == keep_sha,
                         "keep": m == keeper})
        links = links_of.get(uf.find(keeper), [])
        groups.append({"kind": "exact" if len(hashes) == 1 and None not in hashes else "near",
                       "keep": items[keeper]["path"], "members": rows, "links": links})
    groups.sort(key=lambda g: (g["kind"] != "exact", -len(g["members"]), g["keep"] or ""))
    return groups


def find_duplicates(items, vectors, gallery, rule, k=10, keep="largest"):
    """The duplicate report of `items` ([{id, path, file, label, sha256, size, mtime_ns}]) whose
    vectors are `vectors` (unit rows), searched in `gallery`; `rule` a NearRule or a cosine."""
    t0 = time.time()
    if not isinstance(rule, NearRule):
        rule = NearRule(float(rule))
    ids = [it["id"] for it in items]
    hashes = LazyHashes(items) if rule.uses_phash else None
    near = near_pairs(gallery, vectors, ids, rule, k, hashes)
    exact = exact_pairs([it.get("sha256") for it in items])
    groups = group_items(items, vectors, near, exact, keep)
    return {"threshold": float(rule.cosine), "rule": rule.as_dict(), "k": int(k), "keep_rule": keep,
            "items": len(items), "phash_computed": hashes.computed if hashes else 0,
            "groups": groups, "exact_groups": sum(g["kind"] == "exact" for g in groups),
            "near_groups": sum(g["kind"] == "near" for g in groups),
            "duplicates": sum(len(g["members"]) - 1 for g in groups), "seconds": round(time.time() - t0, 3)}


def pairs_of(groups, key="path"):
    """Every pair (a, b), a < b, of members that share a group (what a user is shown as duplicates)."""
    out = set()
    for g in groups:
        names = sorted(m[key] for m in g["members"])
        out |= {(a, b) for x, a in enumerate(names) for b in names[x + 1:]}
    return out


# ------------------------------------------------------------------ the only action that changes files
def move_duplicates(report, move_to, library_root=None):
    """Move every group member except its kept copy into `move_to` (keeping its relative path); returns
    [{from, to}] and writes nothing else. Skips a group whose kept copy is gone, and a member whose
    size or mtime changed since it was indexed; never overwrites."""
    move_to = os.path.abspath(move_to)
    if library_root:
        root = os.path.realpath(library_root)
        real = os.path.realpath(move_to)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            raise ConfigError(f"--move-to {move_to} is inside the indexed folder {root}: the moved copies would "
                              f"be indexed again; choose a folder outside it")
    moves = []
    for g in report["groups"]:
        keeper = next(m for m in g["members"] if m["keep"])
        if not keeper.get("file") or not os.path.isfile(keeper["file"]):
            log.warning("group of %s: the copy to keep is missing; nothing in it is moved", keeper["path"])
            continue
        for m in g["members"]:
            if m["keep"] or not m.get("file"):
                continue
            src = m["file"]
            try:
                st = os.stat(src)
            except OSError:
                log.warning("%s: gone already; skipped", src)
                continue
            if (m.get("size") is not None and st.st_size != m["size"]) or \
                    (m.get("mtime_ns") is not None and st.st_mtime_ns != m["mtime_ns"]):
                log.warning("%s changed since it was indexed; not moved (index the folder again first)", src)
                continue
            if os.path.samefile(src, keeper["file"]):
                continue  # the same file under two names: moving one would not free anything
            from .common import file_relpath  # (as the file is spelt on disk: a name that is not UTF-8 keeps its bytes)
            rel = file_relpath(m["path"], src) if m["path"] and not os.path.isabs(m["path"]) else os.path.basename(src)
            dst = os.path.join(move_to, rel)
            stem, ext = os.path.splitext(dst)
            n = 1
            while os.path.exists(dst):
                n += 1
                dst = f"{stem}-{n}{ext}"
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                shutil.move(src, dst)
            except OSError as e:
                raise PPShiTuError(f"cannot move {src} to {dst}: {e}") from None
            moves.append({"from": src, "to": dst, "kept": keeper["file"]})
    return moves


def gallery_items(cfg, gallery, state=None, root=None, rec=None):
    """(items, vectors) of every gallery item for find_duplicates: path, resolved file, label, and the
    file's size / mtime / sha256 (from the folder state when it vouches for the item, else read now)."""
    from . import common
    from .folder import sha256_file

    records = [r for r in gallery.records() if r.get("path") is not None]
    vectors, found = common.gallery_vectors(gallery, records, cfg=cfg, rec=rec, root=root)
    rows = state.rows if state is not None else {}
    items = []
    for r, ok in zip(records, found):
        if not ok:
            log.warning("gallery item %s (%s): no vector; left out", r["id"], r["path"])
            continue
        file = common.resolve(r["path"], root)
        row = rows.get(r["path"])
        if row is not None and row.gallery_id == r["id"]:
            size, mtime, digest = row.size, row.mtime_ns, row.sha256
        else:
            try:
                st = os.stat(file)
                size, mtime, digest = st.st_size, st.st_mtime_ns, sha256_file(file)
            except OSError:
                size = mtime = digest = None  # not on disk: still grouped by its vector
        items.append({"id": int(r["id"]), "path": r["path"], "file": file, "label": r.get("label"),
                      "size": size, "mtime_ns": mtime, "sha256": digest})
    vectors = vectors[np.asarray(found, bool)] if len(records) else vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(vectors) else np.ones((0, 1))
    return items, (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)
