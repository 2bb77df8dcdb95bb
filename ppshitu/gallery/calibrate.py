"""A score threshold chosen for the precision the user wants, measured on the gallery's own items.

    result = calibrate_gallery(gallery, target_precision=0.95)   # the stored vectors, no re-embedding
    record_calibration(gallery, result)      # the manifest's `calibration` (a new version, atomically)
    thres = resolve_score_thres(cfg.IndexProcess, gallery)   # what RecognitionSystem.from_config uses

How it measures (exact brute force over the stored vectors, ppshitu/gallery/neighbours.py, so FAISS and
Milvus galleries alike, whatever their index):

* known queries: each item is queried against the rest of the gallery (leave-one-out); its top-1 is a
  correct answer when it carries the item's label, a wrong one otherwise. Items of a single-image label
  have no known query (nothing of their label is left).
* unknown queries: whole labels held out in turn: each item is queried against the gallery without its
  label (its best item of another label); any answer there is wrong, the right one is "unknown".
* at a threshold t an answer is given when the top-1 passes t (IP: cosine >= t, L2: distance <= t).
  precision(t) = correct answers / all answers, on a query stream where `unknown_share` (default 0.5)
  of the queries show objects the gallery lacks; recall(t) = the share of known queries answered with
  their own label.
* the threshold is the lowest one whose precision reaches the target (the most recall at that
  precision); when none does, the one with the highest precision, marked `reached: false`.
  `precision_interval` is the 5-95 % range of the precision there over 200 resamplings of the labels.

Beside the cosine's value, calibrate_gallery records (manifest calibration.neighbourhood) the threshold for
IndexProcess.score neighbourhood (ppshitu/gallery/scores.py: top-1 minus the mean of matches 2-10), measured
the same way on that score; a config asking for that score takes it (else DEFAULT_NEIGHBOURHOOD_THRES).

Crop-like queries (`crops=`, tools/calibrate_gallery.py --queries crops; crop_queries.py): each sampled item is
instead pasted on a photograph, cropped as a detector's box, embedded by the gallery's model and queried the
same two ways; what the system meets on photographs is further from the gallery than its own images are, so the
gallery-only threshold is too strict there (bench/results/bench_calibration.md B, bench_scene_scores.md).

The recall is a leave-one-out figure: a query then meets one image fewer of its label than a real query
meets, so with few images per label it comes out lower than the system's. Past `max_queries` items
(default 20000) a seeded random sample of them is queried (each against the whole gallery).

Where it is used: a config that leaves IndexProcess.score_thres unset (null, the shipped config) gets the
gallery's calibrated value (else DEFAULT_SCORE_THRES, 0.5); an explicit value always wins. The source is
printed once per gallery and value. A calibration is stale once the gallery has changed (items added plus
removed) by more than its `stale_fraction` (default 0.2) of the items it was measured on: the value is
still used, with a warning, unless IndexProcess.calibrate is true, which recalibrates at build_gallery.

Bad input: fewer than two labels, or no label with two images, cannot be calibrated: the result has
`calibrated: false`, a `reason`, and `score_thres` DEFAULT_SCORE_THRES; nothing is recorded.
"""
import logging
import sys
import time

import numpy as np

from ..errors import ConfigError
from .neighbours import from_score, gallery_arrays, pair_scores, scan
from .scores import DEFAULT_NEIGHBOURHOOD_THRES, NEIGHBOURS, check_score, neighbourhood_scores

log = logging.getLogger("ppshitu.gallery")

FORMAT = "ppshitu-calibration-1"
DEFAULT_SCORE_THRES = 0.5
DEFAULT_TARGET_PRECISION = 0.95
DEFAULT_UNKNOWN_SHARE = 0.5
STALE_FRACTION = 0.2
MAX_QUERIES = 20000
RESAMPLES = 200
MIN_KNOWN_QUERIES = 50  # fewer: the figures are given, with a warning that they are rough
MANIFEST_KEY = "calibration"
CURVE_POINTS = 200


def check_target(target_precision, what="--precision"):
    try:
        p = float(target_precision)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number between 0 and 1 (exclusive), got {target_precision!r}") from None
    if not 0.0 < p < 1.0:
        raise ConfigError(f"{what} must be between 0 and 1 (exclusive): a precision of {target_precision!r} "
                          f"cannot be asked for")
    return p


def check_share(unknown_share, what="--unknown-share"):
    try:
        u = float(unknown_share)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1), got {unknown_share!r}") from None
    if not 0.0 <= u < 1.0:
        raise ConfigError(f"{what} must be in [0, 1) (the share of queries showing objects the gallery lacks), "
                          f"got {unknown_share!r}")
    return u


# ------------------------------------------------------------------ the measurement
def measure(vectors, label_ids, higher_is_better=True, max_queries=MAX_QUERIES, seed=0):
    """Per queried item: the top-1 of its leave-one-out query and whether it is right, and the top-1 of its
    held-out-label query. Scores higher-is-better. Returns a dict of arrays."""
    near = scan(vectors, label_ids, higher_is_better, k=0, queries=query_rows(len(vectors), max_queries, seed))
    known = np.isfinite(near.same_score)  # the label has another item
    top = np.maximum(near.same_score, near.other_score)
    correct = near.same_score > near.other_score  # a tie is not counted as right
    return {"rows": near.queries, "labels": np.asarray(label_ids)[near.queries], "known": known, "top": top,
            "correct": correct & known, "unknown_top": near.other_score}


def query_rows(n, max_queries=MAX_QUERIES, seed=0):
    """The items queried: all of them, or past `max_queries` a seeded random sample (sorted)."""
    if n > max_queries:
        return np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
    return np.arange(n)


def measure_neighbourhood(vectors, label_ids, higher_is_better=True, max_queries=MAX_QUERIES, seed=0):
    """measure's dict for IndexProcess.score neighbourhood (ppshitu/gallery/scores.py): each queried item's
    top-1 minus the mean of its 2nd-10th matches, against the rest of the gallery (known) and against the
    gallery without its label (unknown): measure_queries with the items' own vectors as the queries."""
    v = np.ascontiguousarray(vectors, np.float32)
    rows = query_rows(len(v), max_queries, seed)
    return measure_queries(v, label_ids, rows, v[rows], higher_is_better, "neighbourhood")


def measure_queries(vectors, label_ids, rows, query_vectors, higher_is_better=True, score="cosine"):
    """calibrate.measure's dict for outside queries: query j stands for gallery item rows[j]; known: against
    the gallery without that item; unknown: against the gallery without its label. `score`: cosine (the top-1)
    or neighbourhood (top-1 minus the mean of matches 2-10, scores.py). Exact, in blocks of queries."""
    v = np.ascontiguousarray(vectors, np.float32)
    q = np.ascontiguousarray(query_vectors, np.float32)
    lab, rows = np.asarray(label_ids), np.asarray(rows, np.int64)
    n, m = len(v), len(rows)
    top, unknown_top, correct = (np.full(m, np.nan) for _ in range(3))
    block = max(1, min(256, 2 ** 24 // max(n, 1)))
    for start in range(0, m, block):
        r = rows[start:start + block]
        s = pair_scores(q[start:start + block], v, higher_is_better).astype(np.float64)
        s[np.arange(len(r)), r] = -np.inf
        for unknown in (False, True):
            if unknown:
                s[lab[r][:, None] == lab[None, :]] = -np.inf
            kk = min(NEIGHBOURS if score == "neighbourhood" else 1, n)
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(r), 1))
            best = np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)
            ranked = np.take_along_axis(s, best, 1)
            values = neighbourhood_scores(ranked, True) if score == "neighbourhood" else ranked[:, 0]
            values = np.where(np.isfinite(values), values, np.nan)
            sl = slice(start, start + len(r))
            if unknown:
                unknown_top[sl] = values
            else:
                top[sl] = values
                correct[sl] = (lab[best[:, 0]] == lab[r]) & np.isfinite(ranked[:, 0])
    known = np.bincount(lab)[lab[rows]] >= 2
    return {"rows": rows, "labels": lab[rows], "known": known, "top": top, "correct": (correct == 1) & known,
            "unknown_top": unknown_top}


def _count_at(sorted_scores, thresholds):
    """How many of `sorted_scores` (ascending) are >= each threshold."""
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")


def curves(m, unknown_share=DEFAULT_UNKNOWN_SHARE):
    """(thresholds ascending, precision, recall, answered share) over every distinct measured score."""
    known, u = m["known"], unknown_share
    known = known & np.isfinite(m["top"])  # (a neighbourhood score needs two matches)
    right = np.sort(m["top"][known & m["correct"]])
    wrong = np.sort(m["top"][known & ~m["correct"]])
    unknown = np.sort(m["unknown_top"][np.isfinite(m["unknown_top"])])
    nk, nu = max(int(known.sum()), 1), max(len(unknown), 1)
    ts = np.unique(np.concatenate([right, wrong, unknown]))
    tp = _count_at(right, ts) / nk
    fpk = _count_at(wrong, ts) / nk
    fpu = _count_at(unknown, ts) / nu if u > 0 else np.zeros(len(ts))
    answered = (1 - u) * (tp + fpk) + u * fpu
    precision = np.where(answered > 0, (1 - u) * tp / np.maximum(answered, 1e-300), np.nan)
    return ts, precision, tp, answered


def _choose(ts, precision, recall, target):
    """(index, reached): the lowest threshold whose precision reaches the target, else the best precision."""
    ok = np.nonzero((precision >= target) & (recall > 0))[0]
    if len(ok):
        return int(ok[0]), True
    valid = np.nonzero(np.isfinite(precision) & (recall > 0))[0]
    if not len(valid):
        return None, False
    best = valid[np.argmax(precision[valid])]  # (argmax: the first, i.e. lowest, of equal precisions)
    return int(best), False


def _between(ts, i):
    """A threshold that passes ts[i] and everything above it and nothing below (midway to the next lower
    score, so that rounding a stored value cannot move it across a measured score)."""
    return float(ts[i]) if i == 0 else float((ts[i] + ts[i - 1]) / 2)


def _interval(m, t, unknown_share, rng, resamples=RESAMPLES):
    """5-95 % range of the precision at t over resamplings of whole labels."""
    labels = m["labels"]
    names, inv = np.unique(labels, return_inverse=True)
    L = len(names)
    known = m["known"]
    per = np.zeros((5, L))
    np.add.at(per[0], inv, (known & m["correct"] & (m["top"] >= t)).astype(float))
    np.add.at(per[1], inv, (known & ~m["correct"] & (m["top"] >= t)).astype(float))
    np.add.at(per[2], inv, known.astype(float))
    np.add.at(per[3], inv, (m["unknown_top"] >= t).astype(float))
    np.add.at(per[4], inv, np.ones(len(labels)))
    weights = rng.multinomial(L, np.full(L, 1.0 / L), size=resamples).astype(float)  # [R, L]
    tp, fpk, nk, fpu, nu = (weights @ per[j] for j in range(5))
    u = unknown_share
    answered = (1 - u) * (tp + fpk) / np.maximum(nk, 1) + u * fpu / np.maximum(nu, 1)
    prec = np.where(answered > 0, (1 - u) * tp / np.maximum(nk, 1) / np.maximum(answered, 1e-300), np.nan)
    prec = prec[np.isfinite(prec)]
    if not len(prec):
        return None
    return [round(float(np.quantile(prec, 0.05)), 4), round(float(np.quantile(prec, 0.95)), 4)]


def refusal(label_counts):
    """Why a gallery cannot be calibrated (None: it can)."""
    counts = list(label_counts.values()) if isinstance(label_counts, dict) else list(label_counts)
    if len(counts) < 2:
        return (f"the gallery has {len(counts)} label{'' if len(counts) == 1 else 's'}: calibration needs at least "
                f"two (one to query, another to be wrongly answered by)")
    if max(counts) < 2:
        return ("every label has a single image: no correct answer can be measured (a leave-one-out query needs "
                "another image of its label); add a second image to some labels")
    return None


def calibrate_vectors(vectors, label_ids, higher_is_better=True, target_precision=DEFAULT_TARGET_PRECISION,
                      unknown_share=DEFAULT_UNKNOWN_SHARE, max_queries=MAX_QUERIES, seed=0, score="cosine",
                      queries=None):
    """The calibration of a set of vectors with their labels (ints or strings); see the module docstring.
    `score`: what the threshold acts on (ppshitu/gallery/scores.py); neighbourhood scores are higher-is-better
    whatever the dist_type. `queries`: (rows, vectors) of outside queries standing for those gallery rows
    (crop_queries.py) instead of the items' own vectors."""
    target = check_target(target_precision, "target_precision")
    check_score(score, "score")
    u = check_share(unknown_share, "unknown_share")
    label_ids = np.asarray(label_ids)
    if label_ids.dtype.kind not in "iu":
        label_ids = np.unique(label_ids.astype(str), return_inverse=True)[1]
    counts = np.bincount(label_ids) if len(label_ids) else np.zeros(0, int)
    counts = counts[counts > 0]
    base = {"format": FORMAT, "target_precision": target, "unknown_share": u, "items": int(len(label_ids)),
            "labels": int(len(counts)), "higher_is_better": bool(higher_is_better), "score": score}
    why = refusal(counts)
    if why is not None:
        return {**base, "calibrated": False, "reason": why, "score_thres": DEFAULT_SCORE_THRES}
    if queries is not None:
        m = measure_queries(vectors, label_ids, queries[0], queries[1], higher_is_better, score)
    else:
        measured = measure if score == "cosine" else measure_neighbourhood
        m = measured(np.asarray(vectors, np.float32), label_ids, higher_is_better, int(max_queries), seed)
    units = higher_is_better if score == "cosine" else True  # what from_score turns back into the store's
    ts, precision, recall, answered = curves(m, u)
    i, reached = _choose(ts, precision, recall, target)
    if i is None:
        return {**base, "calibrated": False, "score_thres": DEFAULT_SCORE_THRES,
                "reason": "no leave-one-out query was answered with its own label: the embeddings do not tell "
                          "this gallery's labels apart"}
    t = _between(ts, i)
    known = m["known"]
    result = {
        **base, "calibrated": True, "reached": reached,
        "score_thres": round(float(from_score(t, units)), 6),
        "precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
        "answered_share": round(float(answered[i]), 4),
        "precision_interval": _interval(m, t, u, np.random.default_rng(seed + 1)),
        "known_queries": int(known.sum()), "unknown_queries": int(np.isfinite(m["unknown_top"]).sum()),
        "sampled": bool(len(m["rows"]) < len(label_ids)),
        "loo_recall_at_1": round(float((m["correct"] & known).sum() / max(known.sum(), 1)), 4),
        "scores": _distributions(m, units),
        "curve": _curve(ts, precision, recall, units),
        "method": "leave-one-out (known) + held-out labels (unknown), exact search over the stored vectors"
                  + ("; queries: the items pasted on photographs and cropped (crop_queries.py)" if queries else ""),
        "queries": "gallery" if queries is None else "crops",
    }
    if not reached:
        result["note"] = (f"no threshold reaches precision {target} on this gallery; the highest measured, "
                          f"{result['precision']}, is used")
    if known.sum() < MIN_KNOWN_QUERIES:
        result["warning"] = (f"measured on {int(known.sum())} known queries only: the precision reached may be "
                             f"off by several points (precision_interval {result['precision_interval']})")
    return result


def _distributions(m, higher_is_better):
    """Quantiles (5, 25, 50, 75, 95 %) of the top-1 scores of right, wrong and unknown queries (store units)."""
    def q(values):
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        return [round(float(from_score(v, higher_is_better)), 4) for v in np.quantile(values, [.05, .25, .5, .75, .95])]
    known = m["known"]
    return {"right": q(m["top"][known & m["correct"]]), "wrong": q(m["top"][known & ~m["correct"]]),
            "unknown": q(m["unknown_top"])}


def _curve(ts, precision, recall, higher_is_better, points=CURVE_POINTS):
    """At most `points` (threshold, precision, recall) rows, in store units, spread over the recall range."""
    if len(ts) > points:
        pick = np.unique(np.linspace(0, len(ts) - 1, points).round().astype(int))
        ts, precision, recall = ts[pick], precision[pick], recall[pick]
    return {"threshold": [round(float(from_score(t, higher_is_better)), 5) for t in ts],
            "precision": [None if not np.isfinite(p) else round(float(p), 4) for p in precision],
            "recall": [round(float(r), 4) for r in recall]}


# ------------------------------------------------------------------ galleries
def calibrate_gallery(gallery, target_precision=DEFAULT_TARGET_PRECISION, unknown_share=DEFAULT_UNKNOWN_SHARE,
                      max_queries=MAX_QUERIES, seed=0, stale_fraction=STALE_FRACTION, crops=None):
    """calibrate_vectors on a store's own items (records + get_vectors), with what the record needs to
    tell later how much the gallery changed. `crops`: {"embedder": the gallery's Embedder, "image_root": where
    its paths lie, "sample": how many crops} to query with the items pasted on photographs and cropped
    (crop_queries.py) instead of their stored vectors."""
    stale_fraction = _check_fraction(stale_fraction)
    items = gallery_arrays(gallery)
    queries, backgrounds = None, None
    if crops and refusal(np.bincount(items.label_ids)) is None:
        from .crop_queries import DEFAULT_SAMPLE, crop_query_vectors
        rows, vectors, backgrounds = crop_query_vectors(items, crops.get("image_root"), crops["embedder"],
                                                        crops.get("sample") or DEFAULT_SAMPLE, seed)
        if not len(rows):
            raise ConfigError("crop-like calibration: none of the gallery's images could be read under "
                              f"IndexProcess.image_root={crops.get('image_root')!r} (or calibrate on the stored "
                              f"vectors: --queries gallery)")
        queries = (rows, vectors)
    result = calibrate_vectors(items.vectors, items.label_ids, gallery.higher_is_better, target_precision,
                               unknown_share, max_queries, seed, queries=queries)
    if backgrounds:
        result["backgrounds"] = backgrounds
    if result["calibrated"]:  # IndexProcess.score neighbourhood's threshold too, recorded beside the cosine's
        other = calibrate_vectors(items.vectors, items.label_ids, gallery.higher_is_better, target_precision,
                                  unknown_share, max_queries, seed, score="neighbourhood", queries=queries)
        if other["calibrated"]:
            result["neighbourhood"] = {k: other[k] for k in ("score_thres", "precision", "recall", "reached",
                                                             "precision_interval", "scores") if k in other}
    manifest = gallery.manifest
    result.update(dist_type=manifest.get("dist_type"), count=len(items), next_id=manifest.get("next_id"),
                  version=getattr(gallery, "version", None), model_fingerprint=manifest.get("model_fingerprint"),
                  stale_fraction=stale_fraction, calibrated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return result


def _check_fraction(value):
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0 < f <= 10:
        raise ConfigError(f"--stale-fraction must be above 0 (a share of the gallery, e.g. 0.2), got {value!r}")
    return f


def manifest_record(result):
    """What the gallery's manifest keeps of a calibration (no curve)."""
    keep = ("format", "score_thres", "target_precision", "precision", "recall", "reached", "precision_interval",
            "unknown_share", "dist_type", "items", "labels", "known_queries", "unknown_queries", "count", "next_id",
            "version", "stale_fraction", "calibrated_at", "model_fingerprint", "loo_recall_at_1", "neighbourhood",
            "queries")
    return {k: result[k] for k in keep if k in result}


def record_calibration(gallery, result):
    """Write the calibration into the gallery's manifest (FAISS: a new version, atomically; Milvus: the
    collection's metadata property). A result that could not calibrate is not recorded."""
    if not result.get("calibrated"):
        raise ConfigError(f"nothing to record: {result.get('reason')}")
    gallery.set_calibration(manifest_record(result))
    return gallery


def calibration_of(gallery):
    """The gallery's recorded calibration, or None."""
    record = (getattr(gallery, "manifest", None) or {}).get(MANIFEST_KEY)
    if not isinstance(record, dict) or record.get("format") != FORMAT or "score_thres" not in record:
        return None
    return record


def changed_fraction(gallery, record):
    """The share of the calibrated items that changed since: (added + removed) / calibrated count. FAISS
    counts both from its never-reused ids (next_id); other stores by the item count alone."""
    manifest = gallery.manifest
    count_now = int(manifest.get("count", len(gallery)))
    base = max(int(record.get("count") or 0), 1)
    if record.get("next_id") is not None and manifest.get("next_id") is not None:
        added = max(0, int(manifest["next_id"]) - int(record["next_id"]))
        removed = max(0, int(record["count"]) + added - count_now)
        return (added + removed) / base
    return abs(count_now - int(record.get("count") or 0)) / base


def is_stale(gallery, record):
    return changed_fraction(gallery, record) > float(record.get("stale_fraction", STALE_FRACTION))


def describe(record):
    day = str(record.get("calibrated_at", ""))[:10]
    reached = "" if record.get("reached", True) else f", not reached: {record.get('precision')}"
    return f"calibrated for precision {record.get('target_precision')} on this gallery, {day}{reached}"


_ANNOUNCED = set()


def _announce(key, text):
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        print(text, file=sys.stderr)


def resolve_score_thres(index_process, gallery, announce=True):
    """IndexProcess.score_thres when the config gives one; else the gallery's calibrated value; else
    DEFAULT_SCORE_THRES. The source is printed (stderr) once per gallery, value and source."""
    value, source, warning = score_thres_source(index_process, gallery)
    if announce:
        where = getattr(gallery, "index_dir", None)
        _announce((where, value, source), f"score_thres {value:g} ({source})")
        if warning:
            _announce((where, value, "stale"), f"warning: {warning}")
    return value


def score_thres_source(index_process, gallery):
    """(value, where it comes from, a warning or None) without printing."""
    explicit = (index_process or {}).get("score_thres")
    if explicit is not None:
        return float(explicit), "IndexProcess.score_thres in the config", None
    record = calibration_of(gallery)
    if ((index_process or {}).get("score") or "cosine") == "neighbourhood":
        return _neighbourhood_source(gallery, record)
    if record is None or record.get("dist_type") not in (None, gallery.manifest.get("dist_type")):
        return DEFAULT_SCORE_THRES, ("the default; IndexProcess.score_thres unset and the gallery not calibrated: "
                                     "tools/calibrate_gallery.py picks one for a target precision"), None
    warning = None
    fraction = changed_fraction(gallery, record)
    if fraction > float(record.get("stale_fraction", STALE_FRACTION)):
        warning = (f"the gallery's calibrated score_thres {record['score_thres']:g} was measured on "
                   f"{record.get('count')} items; {fraction:.0%} of that has changed since (more than "
                   f"{float(record.get('stale_fraction', STALE_FRACTION)):.0%}): it may be stale; recalibrate with "
                   f"tools/calibrate_gallery.py -c CONFIG (or IndexProcess.calibrate: true at build_gallery)")
    return float(record["score_thres"]), describe(record), warning


def _neighbourhood_source(gallery, record):
    """score_thres_source for IndexProcess.score neighbourhood: the calibration's own value for it."""
    own = (record or {}).get("neighbourhood")
    if not isinstance(own, dict) or record.get("dist_type") not in (None, gallery.manifest.get("dist_type")):
        return DEFAULT_NEIGHBOURHOOD_THRES, ("the neighbourhood score's default; IndexProcess.score_thres unset and "
                                             "the gallery not calibrated for it: tools/calibrate_gallery.py"), None
    stale = is_stale(gallery, record)
    warning = score_thres_source({}, gallery)[2] if stale else None
    return float(own["score_thres"]), "neighbourhood score " + describe({**record, **own}), warning


def crop_setup(cfg, sample=None):
    """calibrate_gallery's `crops` for a config whose IndexProcess.calibration_queries is crops (else None):
    its rec model's Embedder and image_root."""
    ip = cfg["IndexProcess"]
    if ip.get("calibration_queries", "gallery") != "crops":
        return None
    from ..embedder import Embedder
    from ..infer.factory import rec_predictor
    return {"embedder": Embedder.from_config(cfg, rec_predictor(cfg)), "image_root": ip.get("image_root"),
            "sample": sample}


def after_update(cfg, gallery, operation):
    """What build_gallery does after `operation` changed the gallery: with IndexProcess.calibrate true,
    calibrate after `new` and after an update that leaves no calibration or a stale one; otherwise say
    when the recorded one went stale. Returns the summary's entries."""
    ip = cfg["IndexProcess"]
    record = calibration_of(gallery)
    stale = record is not None and is_stale(gallery, record)
    if not ip.get("calibrate"):
        if stale:
            log.warning("%s: %s", getattr(gallery, "index_dir", "gallery"), score_thres_source({}, gallery)[2])
            return {"calibration": "stale"}
        return {}
    if operation != "new" and record is not None and not stale:
        return {"calibration": "current"}
    result = calibrate_gallery(gallery, target_precision=ip.get("target_precision", DEFAULT_TARGET_PRECISION),
                               crops=crop_setup(cfg))
    if not result["calibrated"]:
        log.warning("%s: not calibrated, score_thres stays %s (the default) unless the config sets it: %s",
                    getattr(gallery, "index_dir", "gallery"), DEFAULT_SCORE_THRES, result["reason"])
        return {"calibration": "refused"}
    record_calibration(gallery, result)
    log.info("%s: score_thres %g calibrated for precision %s (expected %s, recall %s)",
             getattr(gallery, "index_dir", "gallery"), result["score_thres"], result["target_precision"],
             result["precision"], result["recall"])
    return {"calibration": "recalibrated" if record is not None else "calibrated",
            "score_thres": result["score_thres"]}


# ------------------------------------------------------------------ the plot
def plot_png(result):
    """PNG bytes: precision and recall versus threshold (the chosen one and the target marked), and the
    distributions of right / wrong / unknown top-1 scores."""
    import io

    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    c = result["curve"]
    ts = np.asarray(c["threshold"], float)
    prec = np.asarray([np.nan if p is None else p for p in c["precision"]], float)
    ax.plot(ts, prec, label="precision", color="#1f6fb4")
    ax.plot(ts, c["recall"], label="recall (known objects)", color="#d1651d")
    ax.axhline(result["target_precision"], color="#1f6fb4", lw=0.8, ls=":")
    ax.axvline(result["score_thres"], color="black", lw=1, ls="--",
               label=f"score_thres {result['score_thres']:.3f}: P {result['precision']}, R {result['recall']}")
    ax.set_xlabel("score_thres (cosine)" if result.get("higher_is_better", True) else "score_thres (squared L2)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"{result['items']} items, {result['labels']} labels; precision with "
                 f"{result['unknown_share']:.0%} of queries unknown", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
