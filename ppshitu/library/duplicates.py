"""Duplicate finding over a gallery (tools/find_duplicates.py): candidates by embedding, decisions by
verification.

* **Exact duplicates** share a content hash (sha256).
* **Candidates**: each item's `k` nearest neighbours in the gallery's own index (batched searches: the
  cost grows as n * k, not n^2) whose cosine reaches the candidate floor.
* **Decisions**: each candidate pair is verified (verify.py: local features + RANSAC, then the
  aligned content, tile by tile) and judged by the rule calibrated on this folder
  (dupcalibrate.py): "duplicate" (the same picture, edited), "similar" (the geometry agrees -- the
  same scene or object: a near shot, a burst frame, a crop, a variant -- but the content or the
  overlap does not), or neither. Features are computed only for images that are in a candidate pair,
  once each (an LRU of `FEATURE_CACHE` images), on `workers` threads.
* **Two tiers, complete linkage.** Duplicate groups are complete-linkage clusters of duplicate
  links: two groups merge only when EVERY pair across them is verified a duplicate (pairs that were
  not candidates are verified then), strongest links first -- A~B and B~C never put A with C unless
  A~C holds too, so a group is never chained through a weak link (at most `ON_DEMAND_PER_CANDIDATE`
  x the candidates such pairs are verified; past that budget a pair counts as not linked, and groups
  stay smaller rather than chained). Similar groups are built the same
  way over the duplicate groups (each stands as one unit: every pair across two units must be
  similar or duplicate). Exact copies always link. Only duplicate groups are ever moved by default.
* **The suggested keeper** of a duplicate group (`keep="best"`): the highest resolution, then the
  largest file, then the most EXIF fields, then the shortest path; `largest`, `first` (path order)
  and `oldest` (mtime) as before. Resolution and orientation come from the file's header: a
  thumbnail, an embedding and a verification all see the image as its EXIF orientation shows it.

Nothing is moved unless asked (`move_duplicates`: every non-kept member of the duplicate groups;
`apply_decisions`: what the review page exported), never the last copy of a group, never deleted.
"""
import collections
import contextlib
import hashlib
import io
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError, PPShiTuError

log = logging.getLogger("ppshitu.library")
KEEP_RULES = ("best", "largest", "first", "oldest")
SEARCH_CHUNK = 1024
PHASH_DRAFT = (256, 256)   # JPEGs are decoded at a reduced scale no smaller than this (pHash looks at 32x32)
FEATURE_CACHE = 2000       # images whose verification features are held at once (~190 KB each)
ON_DEMAND_MIN, ON_DEMAND_PER_CANDIDATE = 2000, 2   # complete linkage's own verifications: at most this many
HEADER_BYTES = 1 << 20     # read for an image's size and EXIF (the whole file when that is not enough)
LINKAGE = ("complete: two groups merge only when every pair across them is verified (duplicate groups: the "
           "same picture; similar groups: the same scene or better), strongest links first, so no group is "
           "chained through a weak link (A~B and B~C without A~C never put A with C)")
REPORT_FORMAT = "ppshitu-duplicates-report-2"


def phash_image(im):
    """64-bit perceptual hash (ImageHash's phash) of a PIL image, as 64 booleans."""
    import imagehash

    return np.asarray(imagehash.phash(im.convert("RGB")).hash, bool).reshape(-1)


def phash_file(path):
    """phash_image of a file (JPEGs decoded at reduced scale), or None when it cannot be read (read by
    utils.image's one opener: regular files only, within the byte limit)."""
    from PIL import Image

    from ..utils.image import read_image_bytes

    try:
        with Image.open(io.BytesIO(read_image_bytes(path))) as im:
            im.draft("RGB", PHASH_DRAFT)
            return phash_image(im)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


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


# ------------------------------------------------------------------ features of the items' files
class FeatureCache:
    """verify.Prepared of item i's file, computed on first use (thread-safe; an LRU of `capacity`);
    None when the file cannot be read. `image(i)`: the decoded RGB (not kept)."""

    def __init__(self, items, max_pixels=None, capacity=FEATURE_CACHE):
        self.items, self.max_pixels, self.capacity = items, max_pixels, int(capacity)
        self.cache = collections.OrderedDict()
        self.lock = threading.Lock()
        self.locks = collections.defaultdict(threading.Lock)
        self.computed = 0
        self.unreadable = set()

    def image(self, i):
        from ..utils.image import ImageReadError, read_image
        from .verify import WORK_SIDE

        file = self.items[i].get("file")
        if not file:
            return None
        try:
            return read_image(file, self.max_pixels, min_side=WORK_SIDE)
        except ImageReadError as e:
            if i not in self.unreadable:
                log.warning("%s", e)
            self.unreadable.add(i)
            return None

    def __call__(self, i):
        from .verify import prepare

        with self.lock:
            if i in self.cache:
                self.cache.move_to_end(i)
                return self.cache[i]
            item_lock = self.locks[i]
        with item_lock:
            with self.lock:
                if i in self.cache:
                    return self.cache[i]
            rgb = self.image(i)
            prep = prepare(rgb) if rgb is not None and min(rgb.shape[:2]) >= 8 else None
            with self.lock:
                self.computed += 1
                self.cache[i] = prep
                while len(self.cache) > self.capacity:
                    self.cache.popitem(last=False)
            return prep


@contextlib.contextmanager
def _threads_for_workers():
    """One thread per OpenCV call and per BLAS call while `workers` threads verify side by side."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
            limits = threadpool_limits(1, user_api="blas")
        except ImportError:  # pragma: no cover
            limits = contextlib.nullcontext()
        with limits:
            yield
    finally:
        cv2.setNumThreads(before)


def _local_order(pairs):
    """The pairs in an order that keeps each image's uses close together (a breadth-first order of the
    candidate graph), so the feature LRU rarely computes an image twice."""
    adj = collections.defaultdict(list)
    for i, j in pairs:
        adj[i].append(j)
        adj[j].append(i)
    pos, queue = {}, collections.deque()
    for start in sorted(adj):
        if start in pos:
            continue
        pos[start] = len(pos)
        queue.append(start)
        while queue:
            u = queue.popleft()
            for v in sorted(adj[u]):
                if v not in pos:
                    pos[v] = len(pos)
                    queue.append(v)
    return sorted(pairs, key=lambda p: (max(pos[p[0]], pos[p[1]]), min(pos[p[0]], pos[p[1]])))


def parallel_map(fn, tasks, workers=2):
    """[fn(t) for t in tasks] on `workers` threads (OpenCV and NumPy release the GIL), one OpenCV and
    BLAS thread each."""
    tasks = list(tasks)
    with _threads_for_workers():
        if workers <= 1 or len(tasks) < 2:
            return [fn(t) for t in tasks]
        with ThreadPoolExecutor(max_workers=int(workers)) as pool:
            return list(pool.map(fn, tasks, chunksize=8))


def verify_pairs(pairs, features, workers=2):
    """{(i, j): verify.Evidence or None (a file unreadable)} for `pairs`, on `workers` threads."""
    from .verify import compare_pair

    def one(p):
        a, b = features(p[0]), features(p[1])
        return compare_pair(a, b) if a is not None and b is not None else None

    ordered = _local_order(list(pairs))
    return dict(zip(ordered, parallel_map(one, ordered, workers)))


# ------------------------------------------------------------------ candidates
def candidate_pairs(gallery, vectors, ids, floor, k=10):
    """{(i, j): cosine} for i < j (positions into `ids`) where j is among i's k nearest (or i among
    j's) and the cosine reaches `floor`."""
    pos = {int(g): i for i, g in enumerate(ids)}
    out = {}
    for start in range(0, len(ids), SEARCH_CHUNK):
        q = np.asarray(vectors[start:start + SEARCH_CHUNK], np.float32)
        _, scores, found = gallery.search(q, int(k) + 1)  # +1: the item itself
        cos = to_cosine(scores, gallery.higher_is_better)
        for row in range(len(q)):
            i = start + row
            for g, c in zip(found[row], cos[row]):
                j = pos.get(int(g))
                if j is None or j == i or not np.isfinite(c) or c < floor:
                    continue
                key = (min(i, j), max(i, j))
                out[key] = max(out.get(key, -1.0), float(c))
    return out


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


# ------------------------------------------------------------------ links and complete linkage
class Links:
    """What links two items: exact bytes, or the verified rule (verifying pairs on demand); or, with
    `threshold`, the embedding's cosine alone (unverified, for comparison)."""

    def __init__(self, items, vectors, rule, features, evidence=None, threshold=None, budget=None, floor=None):
        self.items, self.vectors, self.rule, self.features = items, vectors, rule, features
        self.evidence = dict(evidence or {})
        self.threshold = threshold
        # a pair below the candidate floor is not verified on demand either: the calibration put the floor
        # under its edited copies' cosines, so such a pair is no duplicate the rule could confirm (and
        # complete linkage asked about thousands of them in a large folder, each a SIFT pass)
        self.floor = floor
        self.on_demand = 0
        # pairs verified on demand (complete linkage asks about pairs that were no candidates): at most
        # this many; past it such a pair counts as unverified, so not linked (groups stay smaller, never
        # chained). A folder of hundreds of crops of one photo would otherwise ask about all their pairs.
        self.budget = max(ON_DEMAND_MIN, ON_DEMAND_PER_CANDIDATE * len(self.evidence)) if budget is None else budget
        self.over_budget = 0

    def same_bytes(self, i, j):
        a, b = self.items[i].get("sha256"), self.items[j].get("sha256")
        return bool(a) and a == b

    def cosine(self, i, j):
        return float(np.dot(self.vectors[i], self.vectors[j]))

    def ev(self, i, j):
        from .verify import compare_pair

        key = (min(i, j), max(i, j))
        if key not in self.evidence:
            if self.floor is not None and self.cosine(i, j) < self.floor:
                return None
            if self.on_demand >= self.budget:
                self.over_budget += 1
                return None
            a, b = self.features(key[0]), self.features(key[1])
            self.evidence[key] = compare_pair(a, b) if a is not None and b is not None else None
            self.on_demand += 1
        return self.evidence[key]

    def kind(self, i, j):
        """'duplicate' | 'similar' | None."""
        if self.same_bytes(i, j):
            return "duplicate"
        if self.threshold is not None:
            return "duplicate" if self.cosine(i, j) >= self.threshold else None
        e = self.ev(i, j)
        if e is None:
            return None
        if self.rule.duplicate(e):
            return "duplicate"
        return "similar" if self.rule.matched(e) else None

    def strength(self, i, j):
        """Sort key, strongest first: exact bytes, then fewest disagreeing pixels, most inliers."""
        if self.same_bytes(i, j):
            return (0, 0.0, 0.0)
        e = self.evidence.get((min(i, j), max(i, j)))
        if e is None:
            return (1, 0.0, -self.cosine(i, j))
        return (1, e.local, -e.inliers)


def complete_linkage(units, edges, linked, strength):
    """Clusters of `units` (lists of items, the starting clusters) merged along `edges` (item pairs),
    strongest first, only when linked(a, b) holds for every a, b across the two clusters."""
    cluster = {}
    members = {}
    for u, unit in enumerate(units):
        members[u] = list(unit)
        for i in unit:
            cluster[i] = u
    for i, j in sorted(edges, key=lambda e: strength(*e)):
        ci, cj = cluster.get(i), cluster.get(j)
        if ci is None or cj is None or ci == cj:
            continue
        if all(linked(a, b) for a in members[ci] for b in members[cj]):
            keep, gone = min(ci, cj), max(ci, cj)
            for x in members[gone]:
                cluster[x] = keep
            members[keep] += members.pop(gone)
    return [m for m in members.values() if len(m) > 1], members


# ------------------------------------------------------------------ the keeper
def image_info(file):
    """{width, height (as displayed: EXIF orientation applied), exif_fields, orientation} from the
    file's header (read through utils.image's opener), or {} when it cannot be read."""
    from PIL import Image

    from ..utils.image import ImageReadError, open_image_file, read_image_bytes

    def parse(data):
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            exif = im.getexif()
            fields = len(exif)
            for ifd in (0x8769, 0x8825):   # the Exif and GPS sub-IFDs
                with contextlib.suppress(Exception):
                    fields += len(exif.get_ifd(ifd))
            orientation = int(exif.get(0x0112, 1) or 1)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return {"width": int(w), "height": int(h), "exif_fields": int(fields), "orientation": orientation}

    try:
        with open_image_file(file) as f:
            head = f.read(HEADER_BYTES)
        try:
            return parse(head)
        except Exception:  # noqa: BLE001 - the header did not fit: the whole file
            return parse(read_image_bytes(file))
    except (ImageReadError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return {}
    except Exception:  # noqa: BLE001 - a header PIL cannot parse: no size, no EXIF
        return {}


def keeper_order(items, keep):
    """Sort key of a group's members, the one to keep first."""
    if keep not in KEEP_RULES:
        raise ConfigError(f"--keep must be one of {list(KEEP_RULES)}, got {keep!r}")

    def order(i):
        it = items[i]
        if keep == "best":
            return (-(it.get("width") or 0) * (it.get("height") or 0), -(it.get("size") or 0),
                    -(it.get("exif_fields") or 0), len(it["path"] or ""), it["path"] or "")
        if keep == "largest":
            return (-(it.get("size") or 0), it["path"] or "")
        if keep == "oldest":
            return (it.get("mtime_ns") or 0, it["path"] or "")
        return (it["path"] or "",)
    return order


# ------------------------------------------------------------------ the report
def find_duplicates(items, vectors, gallery, rule=None, floor=None, k=10, keep="best", features=None, workers=2,
                    threshold=None, calibration=None, similar=True):
    """The duplicate report of `items` ([{id, path, file, label, sha256, size, mtime_ns}]) whose unit
    vectors are `vectors`, searched in `gallery`. `rule` (a verify.Rule) and `floor` (the candidate
    cosine) usually come from dupcalibrate; `threshold`: link by the cosine alone instead
    (unverified). `features`: a FeatureCache (made when None)."""
    t0 = time.time()
    keeper_order(items, keep)  # (checks the rule name first)
    if threshold is None and rule is None:
        raise ConfigError("find_duplicates needs a rule (or a --threshold)")
    features = features or FeatureCache(items)
    ids = [it["id"] for it in items]
    floor = float(threshold if threshold is not None else floor)
    cands = candidate_pairs(gallery, vectors, ids, floor, k)
    t_cand = time.time()
    evidence = {} if threshold is not None else verify_pairs(cands, features, workers)
    t_ver = time.time()
    links = Links(items, vectors, rule, features, evidence, threshold, floor=floor)
    exact = exact_pairs([it.get("sha256") for it in items])
    with _threads_for_workers():   # (the pairs verified on demand: one BLAS thread, as in verify_pairs)
        edges = [p for p in cands if links.kind(*p) == "duplicate"] + [(min(a, b), max(a, b)) for a, b in exact]
        dup_groups, units = complete_linkage([[i] for i in range(len(items))], set(edges),
                                             lambda a, b: links.kind(a, b) == "duplicate", links.strength)
        sim_groups = []
        if similar and threshold is None:
            sim_edges = {p for p in cands if links.kind(*p) is not None}
            sim_groups, _ = complete_linkage(list(units.values()), sim_edges,
                                             lambda a, b: links.kind(a, b) is not None, links.strength)
            dup_sets = [set(g) for g in dup_groups]
            sim_groups = [g for g in sim_groups if not any(set(g) <= s for s in dup_sets)]
    # header facts (resolution, EXIF) of the grouped images only
    grouped = sorted({i for g in dup_groups + sim_groups for i in g})
    for i in grouped:
        if items[i].get("file") and "width" not in items[i]:
            items[i].update(image_info(items[i]["file"]))
    order = keeper_order(items, keep)
    groups = []
    keepers = {}
    for g in dup_groups:
        members = sorted(g, key=order)
        for m in members:
            keepers[m] = members[0]
        groups.append(_group(items, links, members, "duplicate"))
    for g in sim_groups:
        # a similar group shows each duplicate group by its keeper (the others are in their own group)
        reps = sorted({keepers.get(i, i) for i in g}, key=order)
        if len(reps) > 1:
            groups.append(_group(items, links, reps, "similar"))
    groups.sort(key=lambda gr: (gr["tier"] != "duplicate", gr["kind"] != "exact", -len(gr["members"]),
                                gr["keep"] or ""))
    for n, gr in enumerate(groups, 1):
        gr["id"] = n
    dups = [g for g in groups if g["tier"] == "duplicate"]
    report = {
        "format": REPORT_FORMAT, "items": len(items), "k": int(k), "keep_rule": keep, "linkage": LINKAGE,
        "rule": (rule.as_dict() if threshold is None else
                 {"threshold": floor, "text": f"cosine >= {floor:.3f} (embedding alone, unverified)",
                  "source": "--threshold"}),
        "candidate_floor": round(floor, 4), "calibration": calibration,
        "candidates": len(cands), "verified_pairs": len(evidence) + links.on_demand,
        "unverified_pairs_left_apart": links.over_budget,
        "features_computed": features.computed, "groups": groups,
        "exact_groups": sum(g["kind"] == "exact" for g in dups), "near_groups": sum(g["kind"] == "near" for g in dups),
        "similar_groups": sum(g["tier"] == "similar" for g in groups),
        "duplicates": sum(len(g["members"]) - 1 for g in dups),
        "seconds": {"candidates": round(t_cand - t0, 3), "verification": round(t_ver - t_cand, 3),
                    "grouping": round(time.time() - t_ver, 3), "total": round(time.time() - t0, 3)},
    }
    report["report_id"] = hashlib.sha256(repr([(m["path"], m.get("sha256")) for g in groups for m in g["members"]])
                                         .encode() + str(time.time()).encode()).hexdigest()[:16]
    return report


def _group(items, links, members, tier):
    keeper = members[0]
    keep_sha = items[keeper].get("sha256")
    rows = []
    for m in members:
        it = items[m]
        e = None if m == keeper or links.same_bytes(m, keeper) or links.threshold is not None else links.ev(m, keeper)
        verdict = None
        if m != keeper:
            verdict = "same bytes" if links.same_bytes(m, keeper) else links.kind(m, keeper)
        rows.append({**{k: v for k, v in it.items() if k != "id"}, "id": int(it["id"]),
                     "cosine_to_keep": round(links.cosine(m, keeper), 4),
                     "same_bytes_as_keep": bool(keep_sha) and it.get("sha256") == keep_sha,
                     "evidence_to_keep": e.as_dict() if e is not None else None, "verdict_to_keep": verdict,
                     "keep": tier == "duplicate" and m == keeper,
                     "action": "keep" if tier == "similar" or m == keeper else "move"})
    hashes = {items[m].get("sha256") for m in members}
    kind = "exact" if tier == "duplicate" and len(hashes) == 1 and None not in hashes else \
        ("near" if tier == "duplicate" else "similar")
    return {"tier": tier, "kind": kind, "keep": items[keeper]["path"], "members": rows}


def pairs_of(groups, key="path", tier="duplicate"):
    """Every pair (a, b), a < b, of members that share a group of `tier` (what a user is shown as
    duplicates)."""
    out = set()
    for g in groups:
        if tier is not None and g.get("tier", "duplicate") != tier:
            continue
        names = sorted(m[key] for m in g["members"])
        out |= {(a, b) for x, a in enumerate(names) for b in names[x + 1:]}
    return out


# ------------------------------------------------------------------ the only actions that change files
def _check_move_to(move_to, library_root):
    move_to = os.path.abspath(move_to)
    if library_root:
        root = os.path.realpath(library_root)
        real = os.path.realpath(move_to)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            raise ConfigError(f"--move-to {move_to} is inside the indexed folder {root}: the moved copies would "
                              f"be indexed again; choose a folder outside it")
    return move_to


def _move_one(src, rel, move_to, keeper):
    dst = os.path.join(move_to, rel)
    stem, ext = os.path.splitext(dst)
    n = 1
    while os.path.lexists(dst):
        n += 1
        dst = f"{stem}-{n}{ext}"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        shutil.move(src, dst)
    except OSError as e:
        raise PPShiTuError(f"cannot move {src} to {dst}: {e}") from None
    return {"from": src, "to": dst, "kept": keeper}


def _rel(member):
    from .common import file_relpath  # (as the file is spelt on disk: a name that is not UTF-8 keeps its bytes)

    p = member.get("path")
    return file_relpath(p, member["file"]) if p and not os.path.isabs(p) else os.path.basename(member["file"])


def move_duplicates(report, move_to, library_root=None):
    """Move every duplicate-tier group member except its kept copy into `move_to` (keeping its
    relative path); returns [{from, to, kept}] and writes nothing else. Skips a group whose kept copy
    is gone, and a member whose size or mtime changed since it was indexed; never overwrites. Similar
    groups are never moved here."""
    move_to = _check_move_to(move_to, library_root)
    moves = []
    for g in report["groups"]:
        if g.get("tier", "duplicate") != "duplicate":
            continue
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
            moves.append(_move_one(src, _rel(m), move_to, keeper["file"]))
    return moves


# ------------------------------------------------------------------ decisions (the review page's export)
DECISIONS_FORMAT = "ppshitu-duplicate-decisions-1"


class DecisionsError(PPShiTuError):
    """A decisions file that cannot be carried out as it is (nothing was moved)."""


def file_fingerprint(path):
    """{size, mtime_ns, sha256} of a file now (None when it is gone)."""
    from .folder import sha256_file

    try:
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
    except OSError:
        return None


def _numbers(data):
    """The decisions with mtime_ns as integers (the page writes them as text)."""
    for g in data["groups"]:
        for m in g["members"]:
            if isinstance(m.get("mtime_ns"), str) and m["mtime_ns"].isdigit():
                m["mtime_ns"] = int(m["mtime_ns"])
    return data


def load_decisions(path):
    from ..utils.files import read_input_json

    data = read_input_json(path, "decisions file", error=DecisionsError,
                           invalid="{path}: cannot read the decisions file ({e})")
    if not isinstance(data, dict) or data.get("format") != DECISIONS_FORMAT or not isinstance(data.get("groups"), list):
        raise DecisionsError(f"{path}: not a ppshitu decisions file (format {DECISIONS_FORMAT}; export one from "
                             f"duplicates.html)")
    for g in data["groups"]:
        if not isinstance(g, dict) or not isinstance(g.get("members"), list) or not g["members"]:
            raise DecisionsError(f"{path}: a group without members")
        for m in g["members"]:
            if not isinstance(m, dict) or m.get("action") not in ("keep", "move") or not isinstance(m.get("file"), str):
                raise DecisionsError(f"{path}: each member needs a file and an action keep|move")
            for key in ("size", "mtime_ns"):   # (mtime_ns as text: a browser's numbers keep 53 bits only)
                value = m.get(key)
                if isinstance(value, str) and value.isdigit():
                    m[key] = value = int(value)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise DecisionsError(f"{path}: {m.get('file')}: no recorded {key}")
            if not isinstance(m.get("sha256"), str):
                raise DecisionsError(f"{path}: {m.get('file')}: no recorded sha256")
    return data


def _check_inside(data, where, root):
    """Refuse (nothing moved) a member whose file lies outside `root` (when the report names its folder) or
    whose path has a '..' part: the relative path it is moved under must stay inside --move-to."""
    real_root = os.path.realpath(root) if root else None
    for g in data["groups"]:
        for m in g["members"]:
            path = m.get("path")
            if isinstance(path, str) and ".." in path.replace("\\", "/").split("/"):
                raise DecisionsError(f"{where}: {m['file']}: its path {path!r} is not a path inside the folder "
                                     f"(nothing was moved)")
            if real_root and os.path.commonpath([real_root, os.path.realpath(m["file"])]) != real_root:
                raise DecisionsError(f"{where}: {m['file']} is outside the report's folder {root}; a decisions "
                                     f"file moves only that folder's files (nothing was moved)")


def check_decisions(data, where="the decisions file", root=None):
    """DecisionsError naming what is wrong, before anything is moved: a file outside the report's folder
    `root` or a member path that climbs out of it (a decisions file moves only the library's own files),
    a group with no copy kept (the last copy is never moved), a file decided both ways, a file changed or
    gone since the report (size, mtime or sha256 differ from what the report recorded)."""
    data = _numbers(data)
    _check_inside(data, where, root)
    actions = {}
    for n, g in enumerate(data["groups"], 1):
        kept = [m for m in g["members"] if m["action"] == "keep"]
        if not kept:
            raise DecisionsError(f"{where}: group {g.get('id', n)} keeps none of its {len(g['members'])} images; the "
                                 f"last copy is never moved: keep at least one (nothing was moved)")
        for m in g["members"]:
            if actions.setdefault(m["file"], m["action"]) != m["action"]:
                raise DecisionsError(f"{where}: {m['file']} is kept in one group and moved in another (nothing was "
                                     f"moved)")
    changed = []
    checked = {}
    for g in data["groups"]:
        for m in g["members"]:
            if m["file"] in checked:
                continue
            now = file_fingerprint(m["file"])
            checked[m["file"]] = now
            if now is None:
                changed.append(f"{m['file']} (gone)")
            elif (now["size"], now["mtime_ns"], now["sha256"]) != (m["size"], m["mtime_ns"], m["sha256"]):
                what = "content" if now["sha256"] != m["sha256"] else ("size" if now["size"] != m["size"] else "mtime")
                changed.append(f"{m['file']} ({what} changed)")
    if changed:
        raise DecisionsError(f"{where}: {len(changed)} file(s) changed since the report was made, so the decisions "
                             f"may no longer be what you saw; nothing was moved. Run find_duplicates again and "
                             f"review the new report. Changed: {', '.join(changed[:5])}"
                             f"{' ...' if len(changed) > 5 else ''}")
    return actions


def apply_decisions(data, move_to, library_root=None, where="the decisions file"):
    """Carry out a decisions file: every file marked `move` goes into `move_to` (relative path kept,
    never over an existing file); nothing is deleted; refused as a whole (DecisionsError, nothing
    moved) by check_decisions. Returns [{from, to, kept}]."""
    root = library_root or data.get("folder")
    move_to = _check_move_to(move_to, root)
    actions = check_decisions(data, where, root)
    moves = []
    moved = set()
    for g in data["groups"]:
        kept = [m["file"] for m in g["members"] if actions[m["file"]] == "keep"]
        for m in g["members"]:
            if actions[m["file"]] != "move" or m["file"] in moved:
                continue
            if not any(os.path.isfile(k) and not os.path.samefile(k, m["file"]) for k in kept):
                log.warning("%s: no other copy of its group is still there; not moved", m["file"])
                continue
            moves.append(_move_one(m["file"], _rel(m), move_to, kept[0]))
            moved.add(m["file"])
    return moves


def default_decisions(report):
    """The decisions the review page starts from (duplicate groups: move all but the suggested keeper;
    similar groups: keep all), as a decisions file."""
    fields = ("path", "file", "size", "sha256")
    return {"format": DECISIONS_FORMAT, "report_id": report.get("report_id"), "folder": report.get("folder"),
            "groups": [{"id": g.get("id"), "tier": g.get("tier", "duplicate"),
                        "members": [{**{k: m.get(k) for k in fields},
                                     # as text: nanoseconds since 1970 are past the 53 bits a browser's numbers keep
                                     "mtime_ns": None if m.get("mtime_ns") is None else str(m["mtime_ns"]),
                                     "action": m.get("action", "keep")}
                                    for m in g["members"]]} for g in report["groups"]]}


# ------------------------------------------------------------------ the gallery's items
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
