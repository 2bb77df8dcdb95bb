"""The duplicate rule, calibrated on the user's own folder at run time (find_duplicates).

Constants fitted on someone else's photos do not carry over (a rule fitted on the project's synthetic
set joined half a new user's look-alikes), so the rule is measured where it is used:

* **Positives**: edited copies of a sample of the folder's own images (`SAMPLE` images, chosen by
  a seed from the folder's content), made in memory and never written anywhere: the usual
  copy-detection edits at strengths drawn from `EDIT_RANGES` (JPEG re-encoding, downscaling, a
  crop, brightness/contrast, a small rotation with its corners cropped away or filled by
  reflection, or two of these), each then saved as a JPEG of quality 85-95 in memory as a photo
  app would.
* **Hard negatives**: each sampled image against its `NEIGHBOURS` nearest neighbours in the folder
  (the gallery's own index; byte-identical files left out): distinct pictures that look alike, the
  pairs a rule must not join; and one LOCALLY changed copy of each sampled image (a region of
  0.2-12 % of the area, log-uniformly, recoloured or replaced by another part of the image, visibly,
  then re-encoded): what a neighbouring frame or a colour variant looks like to the verifier, and
  what a global comparison misses. The small end matters: a patch of under 1 % of the picture fills
  part of one tile; drawn from 1 % up (before), every change on the development sets disagreed in
  >= 20 % of its worst tile, so a folder's pairs could not tell a 3 % allowance from 10 % and
  calibration took the 10 % cap, where a fifth of the changes under 1 % slip through (they disagree
  in 3-10 % of their tile, as the look-alikes that passed did). 0.2 % is the smallest change the
  benchmark's confusers count as visible (bench/dup_sets.visibly_different). (Where no visible
  change could be drawn, e.g. on a dark star field, there is none: an
  invisible change is the same picture, and counted as a negative it made every rule look
  imprecise). The neighbour pairs also hold the folder's own duplicates, which every sensible rule
  passes, so they are not counted as they are: the look-alikes among them are counted where that is
  unambiguous (aligned, overlapping, >= `FAR_LOCAL` of the worst tile disagreeing) and taken to slip
  through a rule as often as the locally changed copies do (`choose_rule`).
* **Rule**: every (min RANSAC inliers, max worst-tile disagreement, max mean residual) on a grid is
  scored on these pairs; the one reaching the target precision (`--precision`, default 0.95) with
  the best recall wins (within `RECALL_SLACK`, one point, of the best recall: the most precise, then
  the best recall, then the loosest). The worst tile may disagree in at most `MAX_LOCAL` (10 %) of
  its pixels whatever the pairs say (a bound set while the local changes were drawn from 1 % of the
  area, which disagree in >= 20 % of a tile, the development set's real look-alikes from 14 %: a
  folder's own pairs could not tell 0.10 from 0.20 and calibration took the looser: 4 of the 120
  development confusers passed at 0.20, at 0.10 the 2 whose two images do not differ visibly (a
  generated variant that changed nothing; with the small changes the folder's pairs now set the
  allowance, mostly below it). The overlap a duplicate needs is fixed at 0.6 (two
  crops sharing less than half their area are different pictures by definition; 0.6 leaves a
  margin for the measurement). The
  embedding's candidate floor is set from the positives' cosines (their 2nd percentile, less 0.02),
  so that verification sees the edited copies the embedding can propose.

A folder with fewer than `MIN_IMAGES` readable images is too small to calibrate; one where no rule on
the grid reaches the target precision with at least half the positives (a folder of near-identical
or featureless images) is too uniform. Both fall back to `DEFAULT_RULE` (>= 12 inliers, <= 3 % of the
worst tile disagreeing, mean residual <= 0.5 of the contrast, overlap >= 0.6: what this calibration
chose on a development folder of the project's own, bench/dup_sets.py's dev-confusers) with
candidate floor `DEFAULT_FLOOR`, and say so.

The result is cached per folder, model and target precision in `$PPSHITU_DUPLICATES_CACHE`
(default ~/.cache/ppshitu/duplicates/), never in the folder; it is reused while the folder's image
count stays within 20 % of the calibrated one (`--recalibrate` measures again).
"""
import hashlib
import io
import json
import logging
import os
import time

import cv2
import numpy as np

from .verify import Rule, compare_pair

log = logging.getLogger("ppshitu.library")
FORMAT = "ppshitu-duplicate-calibration-2"   # 2: local changes from 0.2 % of the area
SAMPLE = 60
EDITS_PER_IMAGE = 2
NEIGHBOURS = 4
MIN_IMAGES = 12
MIN_RECALL = 0.5
RECALL_SLACK = 0.01
FAR_LOCAL = 0.2      # a pair with this share of its worst tile disagreeing is clearly not the same picture
MIN_CHANGE = 20.0    # levels: the mean change a locally changed copy makes over its region
LOCAL_AREA = (0.002, 0.12)   # the share of the area a locally changed copy changes (drawn log-uniformly)
MIN_OVERLAP = 0.6
GRID_INLIERS = (6, 8, 10, 12, 15, 20, 25, 30, 40, 60)
MAX_LOCAL = 0.10    # the most of the worst tile a rule lets disagree (module docstring)
GRID_LOCAL = tuple(v for v in (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10) if v <= MAX_LOCAL)
GRID_GLOBAL = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)
DEFAULT_RULE = Rule(12, 0.03, 0.5, MIN_OVERLAP, "the documented default (ppshitu/library/dupcalibrate.py)")
DEFAULT_FLOOR = 0.6
FLOOR_RANGE = (0.4, 0.9)
CACHE_TOLERANCE = 0.2
EDIT_RANGES = {
    "jpeg": {"quality": (10, 50)},
    "resize": {"scale": (0.25, 0.85)},
    "crop": {"cut": (0.03, 0.20)},                       # of each side, in total, from random sides
    "tone": {"brightness": (0.05, 0.30), "contrast": (0.65, 1.4)},
    "rotate": {"degrees": (1.0, 7.0)},                   # corners cropped away, or filled by reflection
    "combo": {"edits": 2},
}


# ------------------------------------------------------------------ edits (in memory only)
def _jpeg(rgb, quality):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _rotate(rgb, deg, crop):
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    out = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if not crop:
        return out
    a = np.radians(abs(deg))   # the largest centred rectangle of the same aspect inside the rotated frame
    s = 1.0 / (np.cos(a) + max(w / h, h / w) * np.sin(a))
    cw, ch = max(8, int(w * s)), max(8, int(h * s))
    x, y = (w - cw) // 2, (h - ch) // 2
    return np.ascontiguousarray(out[y:y + ch, x:x + cw])


def calibration_edit(rgb, kind, rng):
    """One edited copy of `rgb` (`kind` one of EDIT_RANGES)."""
    h, w = rgb.shape[:2]
    r = EDIT_RANGES
    if kind == "jpeg":
        return _jpeg(rgb, rng.integers(*r["jpeg"]["quality"]))
    if kind == "resize":
        s = rng.uniform(*r["resize"]["scale"])
        return cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    if kind == "crop":
        cx, cy = rng.uniform(*r["crop"]["cut"]), rng.uniform(*r["crop"]["cut"])
        lx, ty = rng.uniform(0, cx), rng.uniform(0, cy)
        x1, y1, x2, y2 = int(w * lx), int(h * ty), int(w * (1 - cx + lx)), int(h * (1 - cy + ty))
        return np.ascontiguousarray(rgb[y1:max(y2, y1 + 8), x1:max(x2, x1 + 8)])
    if kind == "tone":
        c = rng.uniform(*r["tone"]["contrast"])
        b = rng.choice([-1, 1]) * rng.uniform(*r["tone"]["brightness"]) * 255
        return np.clip((rgb.astype(np.float32) - 128) * c + 128 + b, 0, 255).astype(np.uint8)
    if kind == "rotate":
        return _rotate(rgb, rng.choice([-1, 1]) * rng.uniform(*r["rotate"]["degrees"]), rng.random() < 0.5)
    if kind == "combo":
        kinds = [k for k in EDIT_RANGES if k != "combo"]
        out = rgb
        for k in rng.choice(kinds, size=r["combo"]["edits"], replace=False):
            out = calibration_edit(out, str(k), rng)
        return out
    raise ValueError(f"unknown edit {kind!r}")


def edited_copy(rgb, rng):
    """(kind, an edited copy as a photo app saves it)."""
    kind = str(rng.choice(list(EDIT_RANGES)))
    return kind, _jpeg(calibration_edit(rgb, kind, rng), rng.integers(85, 96))


def locally_changed(rgb, rng, tries=6):
    """A copy with one region (LOCAL_AREA: 0.2-12 % of the area, log-uniformly; an ellipse or a
    rectangle) recoloured or replaced by another part of the image, then lightly re-encoded: not the
    same picture. The change is made
    visible (a mean change of at least `MIN_CHANGE` levels over the region; else another is drawn):
    a hue turned in a grey region changes nothing and is no negative; None when `tries` draws found
    no visible change."""
    h, w = rgb.shape[:2]
    src = rgb.astype(np.float32)
    out = None
    for _ in range(tries):
        area = float(np.exp(rng.uniform(*np.log(LOCAL_AREA)))) * h * w
        aspect = rng.uniform(0.5, 2.0)
        rw = min(w - 2, max(4, int(np.sqrt(area * aspect))))
        rh = min(h - 2, max(4, int(np.sqrt(area / aspect))))
        x, y = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        mask = np.zeros((h, w), np.float32)
        if rng.random() < 0.5:
            cv2.ellipse(mask, (x + rw // 2, y + rh // 2), (rw // 2, rh // 2), 0, 0, 360, 1.0, -1)
        else:
            mask[y:y + rh, x:x + rw] = 1.0
        inside = mask > 0.5
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
        if rng.random() < 0.5:   # recolour: turn the hue, change the saturation and lightness of the region
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(20, 70)) % 180
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.5) + 30, 0, 255)
            hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.6, 0.9), 0, 255)
            alt = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        else:                    # another part of the image in its place (a subject that moved)
            dx, dy = int(rng.integers(-w // 3, w // 3 + 1)), int(rng.integers(-h // 3, h // 3 + 1))
            alt = np.roll(src, (dy or h // 4, dx or w // 4), axis=(0, 1))
        out = np.clip(src * (1 - mask) + alt * mask, 0, 255)
        if np.abs(out - src)[inside].mean() >= MIN_CHANGE:
            return _jpeg(out.astype(np.uint8), rng.integers(60, 96))
    return None


# ------------------------------------------------------------------ the rule from measured pairs
def _table(evs):
    """The evidence as arrays: aligned (bool), inliers, frame (bool), overlap, local, global."""
    return {"inl": np.array([e.inliers for e in evs], float), "feat": np.array([e.aligned == "features" for e in evs]),
            "frame": np.array([e.aligned == "frame" for e in evs]), "ov": np.array([e.overlap for e in evs], float),
            "loc": np.array([e.local for e in evs], float), "glo": np.array([e.global_ for e in evs], float)}


def _passing(t, mi, ml, mg):
    return ((t["feat"] & (t["inl"] >= mi)) | t["frame"]) & (t["ov"] >= MIN_OVERLAP) & (t["loc"] <= ml) & \
        (t["glo"] <= mg)


def _unseen(ev):
    """A locally changed copy the verifier did not see at all: aligned, overlapping, and not one pixel of its worst
    tile disagreeing (a change of a few tenths of a percent of the area can vanish on the comparison grid). Every
    rule on the grid passes it, so it tells no rule from another; counted, it only lowered every rule's precision
    alike (on the development folder below the target everywhere, and calibration fell back)."""
    return ev.aligned is not None and ev.overlap >= MIN_OVERLAP and ev.local <= 0.0


def choose_rule(pos, near, local, target):
    """(Rule, stats): over the grid, the rule whose estimated precision reaches `target` with the best
    recall (within RECALL_SLACK of it the most precise: a rule that only just reaches the target is a
    fragile choice; then the best recall; then the loosest, the most disagreement, residual and the
    fewest inliers allowed: where the folder's pairs cannot tell two rules apart, the looser leaves a
    margin for edits stronger than the calibration drew, and MAX_LOCAL bounds it on the other side --
    the strictest, taken before, sat at the edge of the edited copies: with the 3 x 3 test most of them
    disagree nowhere, and it chose 0 % of a tile and >= 30 inliers);
    (None, stats of the most precise) when none does.

    `pos`: edited copies (Evidence), `near`: nearest-neighbour pairs, `local`: locally changed copies (those the
    verifier did not see at all left out: `_unseen`).
    A rule's true positives are the edited copies it passes; its false positives, the locally changed
    copies it passes plus the folder's own look-alikes it would pass. The neighbour pairs cannot be
    used as they are -- they also hold the folder's own duplicates, which every sensible rule passes
    -- so the look-alikes among them are counted where they are unambiguous (aligned, overlapping,
    >= FAR_LOCAL of the worst tile disagreeing) and assumed to slip through a rule as often as the
    synthetic local changes do: M = clear ones / (share of local changes that clear); a rule passing
    L of the C local changes is charged L (1 + M / C)."""
    unseen = sum(_unseen(e) for e in local)
    local = [e for e in local if not _unseen(e)]
    P, C, Nn = _table(pos), _table(local), _table(near)
    npos = max(1, len(pos))

    def passing(t, *r):
        return int(_passing(t, *r).sum()) if len(t["inl"]) else 0
    geo = lambda t: (t["feat"] | t["frame"]) & (t["ov"] >= MIN_OVERLAP)  # noqa: E731
    clear = int((geo(Nn) & (Nn["loc"] >= FAR_LOCAL)).sum()) if len(near) else 0
    aligned_changes = geo(C) if len(local) else np.zeros(0, bool)
    q_far = float((C["loc"][aligned_changes] >= FAR_LOCAL).mean()) if aligned_changes.any() else 1.0
    lookalikes = clear / max(q_far, 0.1)
    weight = 1.0 + lookalikes / max(1, len(local))
    reaching, most_precise = [], None
    for mi in GRID_INLIERS:
        for ml in GRID_LOCAL:
            for mg in GRID_GLOBAL:
                tp = passing(P, mi, ml, mg)
                recall = tp / npos
                changes = passing(C, mi, ml, mg)
                fp = changes * weight
                precision = tp / (tp + fp) if tp + fp else 1.0
                stats = {"min_inliers": mi, "max_local": ml, "max_global": mg, "precision": round(precision, 4),
                         "recall": round(recall, 4), "positives_passing": tp, "local_changes_passing": changes,
                         "lookalikes_among_neighbour_pairs": round(lookalikes, 1), "local_changes_unseen": unseen,
                         "neighbour_pairs_passing": passing(Nn, mi, ml, mg)}
                if precision >= target:
                    reaching.append(((precision, recall, ml, mg, -mi), recall, Rule(mi, ml, mg, MIN_OVERLAP), stats))
                pkey = (precision, recall, mi, -ml, -mg)
                if most_precise is None or pkey > most_precise[0]:
                    most_precise = (pkey, None, stats)
    if not reaching:
        return None, most_precise[2]
    top = max(r[1] for r in reaching)
    _, _, rule, stats = max((r for r in reaching if r[1] >= top - RECALL_SLACK), key=lambda r: r[0])
    return rule, stats


def _pct(x, q):
    return round(float(np.percentile(x, q)), 4) if len(x) else None


# ------------------------------------------------------------------ the calibration
def calibrate_folder(items, vectors, gallery, rec, features, target=0.95, seed=0, say=print, workers=2):
    """Calibrate the duplicate rule on `items` (find_duplicates' items, `vectors` their unit
    embeddings, searched in `gallery`); `features(i)` gives item i's verify.Prepared (None if
    unreadable) and `features.image(i)` its decoded RGB. Returns the calibration dict (`rule_of`
    reads it)."""
    from .duplicates import parallel_map
    from .verify import prepare

    t0 = time.time()
    n = len(items)
    out = {"format": FORMAT, "target_precision": target, "images": n, "date": time.strftime("%Y-%m-%d %H:%M"),
           "edit_ranges": EDIT_RANGES, "fallback": None}
    if n < MIN_IMAGES:
        return _fallback(out, f"the folder has {n} images, fewer than {MIN_IMAGES}: too small to calibrate", say, t0)
    content_seed = int(hashlib.sha256("\n".join(sorted(str(it.get("sha256") or it["path"]) for it in items))
                                      .encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, content_seed])
    order = [int(i) for i in rng.permutation(n)]
    images = dict(zip(order[:SAMPLE], parallel_map(features.image, order[:SAMPLE], workers)))
    sample = [i for i in order[:SAMPLE] if images[i] is not None and min(images[i].shape[:2]) >= 32]
    if len(sample) < MIN_IMAGES:
        return _fallback(out, f"only {len(sample)} images could be read: too few to calibrate", say, t0)
    # positives: edited copies, made in memory; and one locally changed copy each (a negative)
    copies = [(i, *edited_copy(images[i], rng)) for i in sample for _ in range(EDITS_PER_IMAGE)]
    changed = [(i, c) for i, c in ((i, locally_changed(images[i], rng)) for i in sample) if c is not None]
    images.clear()
    vecs = np.asarray(rec.predict([c for _, _, c in copies]), np.float32)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    pos_cos = [float(v @ vectors[i]) for (i, _, _), v in zip(copies, vecs)]
    pos_kind = [k for _, k, _ in copies]
    pairs, pair_cos = _neighbour_pairs(items, vectors, gallery, sample)

    def versus_copy(task):
        i, img = task
        a = features(i)
        return None if a is None else compare_pair(a, prepare(img))

    def versus_item(key):
        a, b = features(key[0]), features(key[1])
        return None if a is None or b is None else compare_pair(a, b)

    pos = parallel_map(versus_copy, [(i, c) for i, _, c in copies], workers)
    local = parallel_map(versus_copy, changed, workers)
    near = parallel_map(versus_item, pairs, workers)
    keep = [e is not None for e in pos]
    pos = [e for e in pos if e is not None]
    pos_cos = [c for c, k in zip(pos_cos, keep) if k]
    pos_kind = [c for c, k in zip(pos_kind, keep) if k]
    neg_cos = [c for c, e in zip(pair_cos, near) if e is not None]
    near = [e for e in near if e is not None]
    local = [e for e in local if e is not None]
    rule, stats = choose_rule(pos, near, local, target)
    floor = float(np.clip(np.percentile(pos_cos, 2) - 0.02, *FLOOR_RANGE)) if pos_cos else DEFAULT_FLOOR
    by_kind = {}
    for k in sorted(set(pos_kind)):
        sel = [e for e, kk in zip(pos, pos_kind) if kk == k]
        by_kind[k] = {"pairs": len(sel), "recall": round(float(np.mean([(rule or DEFAULT_RULE).duplicate(e)
                                                                          for e in sel])), 4)}
    out["measured"] = {
        "sampled_images": len(sample), "positives": len(pos), "neighbour_pairs": len(near),
        "local_change_negatives": len(local),
        "positive_cosine": {"p2": _pct(pos_cos, 2), "p50": _pct(pos_cos, 50)},
        "neighbour_cosine": {"p50": _pct(neg_cos, 50), "p95": _pct(neg_cos, 95)},
        "positive_inliers_p10": _pct([e.inliers for e in pos], 10),
        "chosen": stats, "recall_by_edit": by_kind,
    }
    if rule is None or stats["recall"] < MIN_RECALL:
        why = (f"no rule reaches precision {target:.2f} here (the best: precision {stats['precision']:.3f} at recall "
               f"{stats['recall']:.3f})" if rule is None else
               f"the rule reaching precision {target:.2f} finds only {stats['recall']:.0%} of the edited copies")
        return _fallback(out, why + ": the folder is too uniform to calibrate", say, t0, floor)
    out["rule"] = {**rule.as_dict(), "source": f"calibrated on this folder ({len(sample)} images sampled)"}
    out["floor"] = round(floor, 4)
    out["seconds"] = round(time.time() - t0, 1)
    say(_summary(out, rule, stats, floor))
    return out


def _neighbour_pairs(items, vectors, gallery, sample):
    """The hard negatives: up to NEIGHBOURS nearest other items of each sampled item (distinct files),
    each pair once; ([(i, j)], [cosine])."""
    from .duplicates import to_cosine

    where = {int(it["id"]): j for j, it in enumerate(items)}
    _, scores, found = gallery.search(np.asarray(vectors[sample], np.float32), NEIGHBOURS + 4)
    cos = to_cosine(scores, gallery.higher_is_better)
    pairs, pair_cos, seen = [], [], set()
    for row, i in enumerate(sample):
        taken = 0
        for g, c in zip(found[row], cos[row]):
            j = where.get(int(g))
            if j is None or j == i or taken >= NEIGHBOURS:
                continue
            key = (min(i, j), max(i, j))
            if key in seen or (items[i].get("sha256") and items[i].get("sha256") == items[j].get("sha256")):
                continue
            seen.add(key)
            taken += 1
            pairs.append(key)
            pair_cos.append(float(c))
    return pairs, pair_cos


def _summary(out, rule, stats, floor):
    """The line calibration prints: what it measured and the rule it chose."""
    m, target = out["measured"], out["target_precision"]
    return (f"calibration on this folder: {m['sampled_images']} images sampled, {m['positives']} edited copies (in "
            f"memory) vs {m['local_change_negatives']} locally changed copies ({stats.get('local_changes_unseen', 0)} "
            f"not seen at all on the comparison grid, left out) + {m['neighbour_pairs']} "
            f"nearest-neighbour pairs (about {stats['lookalikes_among_neighbour_pairs']:.0f} look-alikes among "
            f"them); chosen: >= {rule.min_inliers} inliers, <= {rule.max_local:.1%} of the worst tile disagreeing, "
            f"mean residual <= {rule.max_global:.2f}: precision {stats['precision']:.3f}, recall "
            f"{stats['recall']:.3f} on these pairs (target {target:.2f}); candidates from cosine >= {floor:.3f} "
            f"(edited copies' cosine p2 {m['positive_cosine']['p2']}); {out['seconds']:.0f} s")


def _fallback(out, why, say, t0, floor=None):
    out["fallback"] = why
    out["rule"] = DEFAULT_RULE.as_dict()
    out["floor"] = round(DEFAULT_FLOOR if floor is None else min(floor, DEFAULT_FLOOR), 4)
    out["seconds"] = round(time.time() - t0, 1)
    say(f"calibration: {why}; using the documented default rule: {DEFAULT_RULE.describe()}, candidates from "
        f"cosine >= {out['floor']:.3f}")
    return out


def rule_of(cal):
    """(Rule, candidate floor) of a calibration dict."""
    return Rule.from_dict(cal["rule"]), float(cal["floor"])


# ------------------------------------------------------------------ the cache (never in the user's folder)
def cache_dir():
    return os.environ.get("PPSHITU_DUPLICATES_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ppshitu",
                                                                      "duplicates")


def cache_key(folder, fingerprint, target):
    text = f"{FORMAT}|{os.path.realpath(folder) if folder else ''}|{fingerprint}|{target:.4f}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached(folder, fingerprint, target, n_images):
    """The cached calibration for this folder, model and target while the image count is within
    CACHE_TOLERANCE of the calibrated one (`n_images` None: any), else None."""
    from ..utils.files import read_input_text

    path = os.path.join(cache_dir(), cache_key(folder, fingerprint, target) + ".json")
    try:
        cal = json.loads(read_input_text(path, "calibration cache"))
    except (OSError, ValueError):
        return None
    if not isinstance(cal, dict) or cal.get("format") != FORMAT or "rule" not in cal:
        return None
    n = int(cal.get("images") or 0)
    if n_images is not None and abs(n - n_images) > CACHE_TOLERANCE * max(n, 1):
        return None
    cal["cached"] = path
    return cal


def store(cal, folder, fingerprint, target):
    """Save a calibration in the cache (through the output guard: never over a file ppshitu did not
    write); a cache that cannot be written is only a warning."""
    from ..utils.outputs import OutputGuard

    path = os.path.join(cache_dir(), cache_key(folder, fingerprint, target) + ".json")
    try:
        with OutputGuard(cache_dir(), "the duplicates calibration cache") as guard:
            guard.write_json(path, {**cal, "folder": os.path.realpath(folder) if folder else None,
                                    "model": fingerprint}, indent=1)
    except Exception as e:  # noqa: BLE001 - the cache is an optimisation
        log.warning("calibration not cached (%s)", e)
        return None
    return path
