"""The gallery doctor: what the gallery's own stored vectors say about its labels (tools/gallery_doctor.py).

    report = diagnose(gallery_arrays(gallery), gallery.higher_is_better, k=3)
    json_path, html_path = write_report(report, out_dir, root=image_root)   # thumbnails under out_dir/thumbs

Exact search over the stored vectors (ppshitu/gallery/neighbours.py: FAISS and Milvus alike, no image is
embedded again). What it reports:

* per label: its image count and leave-one-out recall@1 (the share of its items whose nearest other item
  carries their label; a single-image label has none);
* confused pairs: label pairs by how many leave-one-out queries of one answered the other;
* suspected mislabels: items whose k nearest items (k=3) all carry another label AND whose own label's
  centroid (without themselves) is about as far from them as an unrelated label's: their *position*
  (own - typical) / (best - typical) is under `mislabel_position` (0.6), where own, best and typical are
  their scores to their own label's centroid, to the nearest other label's centroid and the median over
  all other labels' centroids. A clean item of a confusable label sits near its own label (position near
  1, or above) even when its neighbours carry another; a mislabelled one's "own" label is a stranger to it
  (position near 0). The scale is each item's own spread of scores, so no gallery-wide fit is needed.
  The label the neighbours carry most is suggested; `margin` (best - own) and its robust z over the
  gallery are reported. Measured (bench/bench_gallery_doctor.py; developed on other classes and seeds):
  labels swapped between random item pairs are found at >= 90 % with <= 10 % of the flags false;
* the same image under two labels: pairs of items of different labels whose vectors are identical (cosine
  >= SAME_VECTOR_COS, i.e. to float rounding), "same file" when their files' sha256 also agree;
* outliers: items far from the rest of their label (labels of 3+ items): their score to their label's
  centroid (without themselves) has a robust z-score under -outlier_z (3) over the gallery's items (scale
  from the upper half);
* single-image labels.
"""
import hashlib
import html
import os
import time
import warnings
from collections import Counter

import numpy as np

from ..utils.outputs import file_uri, write_thumbnail
from .neighbours import label_centroids, point_score, scan

FORMAT = "ppshitu-gallery-doctor-1"
SAME_VECTOR_COS = 0.9995
MISLABEL_POSITION = 0.6
OUTLIER_Z = 3.0
K = 3
MAX_PAIRS = 30
THUMB = 120
CENTROID_BLOCK = 2048


def _robust_z(values, tail="high"):
    """(value - median) / scale over the finite values (NaN stays NaN), the scale measured on the half AWAY
    from the `tail` looked at ((median - q25) / 0.6745 for "high", (q75 - median) / 0.6745 for "low"): the
    items sought (mislabels: high margins; outliers: low scores) then do not widen the scale they are measured
    by, even when they are many."""
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return np.full(len(values), np.nan)
    finite = values[ok]
    med = np.median(finite)
    spread = med - np.quantile(finite, 0.25) if tail == "high" else np.quantile(finite, 0.75) - med
    scale = spread / 0.6745
    if scale <= 0:
        scale = max(float(np.std(finite)), 1e-12)
    return (values - med) / scale


def centroid_margins(vectors, label_ids, n_labels, higher_is_better=True):
    """Per item: (score to its own label's centroid without itself (NaN for a single-image label),
    the best score to another label's centroid, that label's index, the median score over the other
    labels' centroids (its typical score to a label it does not belong to))."""
    v = np.asarray(vectors, np.float64)
    sums, counts = label_centroids(v, label_ids, n_labels)
    own_sum = sums[label_ids] - v
    own_n = counts[label_ids] - 1
    own = np.full(len(v), np.nan)
    has = own_n > 0
    own[has] = point_score(v[has], own_sum[has] / own_n[has, None], higher_is_better)
    cents = sums / np.maximum(counts, 1)[:, None]
    if higher_is_better:
        cents = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    best = np.full(len(v), -np.inf)
    best_label = np.full(len(v), -1, np.int64)
    typical = np.full(len(v), np.nan)
    csq = (cents * cents).sum(1)
    for s in range(0, len(v), CENTROID_BLOCK):
        block = v[s:s + CENTROID_BLOCK]
        if higher_is_better:
            norms = np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
            sc = (block / norms) @ cents.T
        else:
            sc = 2 * block @ cents.T - (block * block).sum(1)[:, None] - csq[None, :]
        rows = np.arange(len(block))
        sc[rows, label_ids[s:s + CENTROID_BLOCK]] = -np.inf
        sc[:, counts == 0] = -np.inf
        j = sc.argmax(1)
        best[s:s + len(block)] = sc[rows, j]
        best_label[s:s + len(block)] = np.where(np.isfinite(sc[rows, j]), j, -1)
        sc[~np.isfinite(sc)] = np.nan  # (own label, empty labels: not among the others)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row with no other label: NaN, as meant
            typical[s:s + len(block)] = np.nanmedian(sc, axis=1)
    return own, best, best_label, typical


def diagnose(items, higher_is_better=True, k=K, mislabel_position=MISLABEL_POSITION, outlier_z=OUTLIER_Z,
             max_pairs=MAX_PAIRS, root=None, hash_files=True):
    """The doctor's report (a JSON-ready dict) of a gallery's items (neighbours.GalleryArrays)."""
    n, names, lab = len(items), items.label_names, items.label_ids
    counts = np.bincount(lab, minlength=len(names)) if n else np.zeros(len(names), int)
    report = {"format": FORMAT, "items": int(n), "labels": len(names), "k": int(k),
              "mislabel_position": mislabel_position,
              "outlier_z": outlier_z, "higher_is_better": bool(higher_is_better),
              "made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    item = _item_fn(items, root)
    if n < 2:
        report.update(label_table=[{"label": names[i], "count": int(c), "loo_recall_at_1": None}
                                   for i, c in enumerate(counts)], confused_pairs=[], suspected_mislabels=[],
                      same_image_two_labels=[], outliers=[],
                      single_image_labels=[names[i] for i in np.nonzero(counts == 1)[0]],
                      summary={"loo_recall_at_1": None}, note="fewer than two items: nothing to compare")
        return report
    near = scan(items.vectors, lab, higher_is_better, k=k)
    multi = counts[lab] >= 2
    right = multi & (near.same_score > near.other_score)
    table = _label_table(names, lab, counts, right)
    confused = _confused_pairs(names, lab, counts, near, multi & ~right)
    own, mislabels, flagged = _suspected_mislabels(items, near, item, higher_is_better, mislabel_position)
    same = _same_image(items, near, item, hash_files)
    outliers = _outliers(own, counts[lab] >= 3, flagged, item, outlier_z)
    report.update(
        summary={"loo_recall_at_1": round(float(right[multi].mean()), 4) if multi.any() else None,
                 "labels_with_2_or_more": int((counts >= 2).sum()), "suspected_mislabels": len(mislabels),
                 "same_image_two_labels": len(same), "outliers": len(outliers),
                 "single_image_labels": int((counts == 1).sum()), "confused_pairs": len(confused)},
        label_table=table, confused_pairs=confused[:max_pairs], suspected_mislabels=mislabels,
        same_image_two_labels=same, outliers=outliers,
        single_image_labels=[names[i] for i in np.nonzero(counts == 1)[0]])
    return report


def _label_table(names, lab, counts, right):
    """Per label: its count and leave-one-out recall@1, worst first."""
    right_per = np.bincount(lab, weights=right.astype(float), minlength=len(names))
    table = [{"label": names[i], "count": int(counts[i]),
              "loo_recall_at_1": round(float(right_per[i] / counts[i]), 4) if counts[i] >= 2 else None}
             for i in range(len(names))]
    table.sort(key=lambda r: (r["loo_recall_at_1"] is None, r["loo_recall_at_1"] or 0, -r["count"], r["label"]))
    return table


def _confused_pairs(names, lab, counts, near, wrong_mask):
    """Label pairs by how often one's leave-one-out top-1 is the other (both directions summed)."""
    wrong = np.nonzero(wrong_mask & (near.other_index >= 0))[0]
    pairs = Counter()
    for i in wrong:
        a, b = int(lab[i]), int(lab[near.other_index[i]])
        pairs[(min(a, b), max(a, b))] += 1
    return [{"labels": [names[a], names[b]], "count": int(c), "counts": [int(counts[a]), int(counts[b])],
             "rate": round(c / float(counts[a] + counts[b]), 4)}
            for (a, b), c in sorted(pairs.items(), key=lambda kv: (-kv[1], names[kv[0][0]], names[kv[0][1]]))]


def _knn_labels(near, lab):
    return np.where(near.knn_index >= 0, lab[np.maximum(near.knn_index, 0)], -1)


def mislabel_position(own, best, typical):
    """(own - typical) / (best - typical) per item: 1 when its own label's centroid is as near as the nearest
    other label's, 0 when it is as far as a typical unrelated label's. Where no spread can be measured (a
    gallery of two labels: best is the typical), 0 when another label is nearer than its own, else +inf;
    NaN for a single-image label (no own centroid)."""
    spread = best - typical
    with np.errstate(all="ignore"):
        pos = np.where(spread > 0, (own - typical) / np.where(spread > 0, spread, 1.0),
                       np.where(own < best, 0.0, np.inf))
    return np.where(np.isfinite(own), pos, np.nan)


def _suspected_mislabels(items, near, item, higher_is_better, max_position):
    """(score to own label's centroid, suspected mislabels, their indices): items whose k neighbours all carry
    another label and whose own label's centroid is little nearer than an unrelated label's (position under
    `max_position`)."""
    names, lab = items.label_names, items.label_ids
    own, best, best_label, typical = centroid_margins(items.vectors, lab, len(names), higher_is_better)
    margin = best - own
    z = _robust_z(np.where(np.isfinite(margin), margin, np.nan))
    position = mislabel_position(own, best, typical)
    knn_labels = _knn_labels(near, lab)
    all_other = ((near.knn_index.shape[1] > 0) & (knn_labels != lab[:, None]).all(1)
                 & (near.knn_index >= 0).all(1))
    with np.errstate(invalid="ignore"):
        flagged = np.nonzero(all_other & (position < max_position))[0]
    mislabels = []
    for i in sorted(flagged, key=lambda i: position[i]):
        votes = Counter(int(x) for x in knn_labels[i])
        suggested = max(votes, key=lambda x: (votes[x], x == best_label[i]))
        mislabels.append({**item(i), "suggested": names[suggested], "margin": round(float(margin[i]), 4),
                          "z": None if not np.isfinite(z[i]) else round(float(z[i]), 2),
                          "position": round(float(position[i]), 3),
                          "neighbours": [{**item(int(j)), "score": round(float(s), 4)}
                                         for j, s in zip(near.knn_index[i], near.knn_score[i]) if j >= 0]})
    return own, mislabels, flagged


def _same_image(items, near, item, hash_files):
    """Pairs of items under different labels whose vectors are the same image's ("same file" when the files'
    hashes agree too)."""
    lab, kk = items.label_ids, near.knn_index.shape[1]
    vn = np.asarray(items.vectors, np.float64)
    vn = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    nb = np.maximum(near.knn_index, 0)
    cosines = np.einsum("nd,nkd->nk", vn, vn[nb]) if kk else np.zeros((len(vn), 0))
    candidates = (near.knn_index >= 0) & (_knn_labels(near, lab) != lab[:, None]) & (cosines >= SAME_VECTOR_COS)
    same, seen = [], set()
    for i, c in zip(*np.nonzero(candidates)):
        j, cos = int(near.knn_index[i, c]), float(cosines[i, c])
        i = int(i)
        if (min(i, j), max(i, j)) in seen:
            continue
        seen.add((min(i, j), max(i, j)))
        a, b = item(min(i, j)), item(max(i, j))
        kind = "same vector"
        if hash_files and a.get("file") and b.get("file"):
            ha, hb = _sha256(a["file"]), _sha256(b["file"])
            if ha is not None and ha == hb:
                kind = "same file"
        same.append({"kind": kind, "cosine": round(cos, 6), "items": [a, b]})
    return same


def _outliers(own, big, flagged, item, outlier_z):
    """Items of labels with 3+ images that sit far from their label's centroid."""
    oz = _robust_z(np.where(big, own, np.nan), tail="low")
    out_idx = np.nonzero(np.isfinite(oz) & (oz < -outlier_z))[0]
    flagged_set = set(int(i) for i in flagged)
    return [{**item(int(i)), "score_to_label": round(float(own[i]), 4), "z": round(float(oz[i]), 2),
             "suspected_mislabel": int(i) in flagged_set}
            for i in sorted(out_idx, key=lambda i: oz[i])]


def _item_fn(items, root):
    def item(i):
        path = items.paths[i]
        file = None
        if path is not None:
            file = path if os.path.isabs(path) or not root else os.path.join(root, path)
        return {"id": int(items.ids[i]), "label": items.labels[i], "path": path, "file": file}
    return item


def _sha256(path):
    try:
        from ..utils.image import image_file_chunks

        h = hashlib.sha256()
        for chunk in image_file_chunks(path):
            h.update(chunk)
        return h.hexdigest()
    except Exception:  # noqa: BLE001 - a missing or unreadable file: no hash, the pair stays "same vector"
        return None


# ------------------------------------------------------------------ the report as files
def report_paths(out_dir):
    return [os.path.join(out_dir, "doctor.json"), os.path.join(out_dir, "doctor.html")]


def write_report(report, out_dir, guard, max_shown=200):
    """doctor.json and doctor.html (+ thumbs/) into `out_dir` through an OutputGuard; returns their paths."""
    json_path, html_path = report_paths(out_dir)
    guard.write_json(json_path, report, indent=1, ensure_ascii=False)
    thumbs = {}

    def img(it):
        f = it.get("file")
        if not f:
            return "<i>(no path)</i>"
        if f not in thumbs:
            name = f"thumbs/{len(thumbs) + 1:06d}.jpg"
            thumbs[f] = name if write_thumbnail(f, os.path.join(out_dir, name), guard, THUMB) else None
        if thumbs[f] is None:
            return "<i>(missing)</i>"
        return f"<a href='{html.escape(file_uri(f))}'><img src='{thumbs[f]}'></a>"

    e = html.escape
    s = report.get("summary", {})
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Gallery doctor</title><style>"
             "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.4em 0 1.4em}"
             "td,th{border:1px solid #ccc;padding:4px 6px;font-size:12px;vertical-align:top;text-align:left}"
             "img{max-width:120px;max-height:120px}.cell{display:inline-block;margin:2px;text-align:center;"
             "font-size:11px;max-width:130px;word-break:break-all}.bad{background:#fbe3e3}.sugg{color:#060}</style>"
             "</head><body>",
             f"<h1>Gallery doctor</h1><p>{e(str(report.get('gallery', '')))}: {report['items']} items, "
             f"{report['labels']} labels; leave-one-out recall@1 {s.get('loo_recall_at_1')}; "
             f"{s.get('suspected_mislabels', 0)} suspected mislabels, {s.get('same_image_two_labels', 0)} images "
             f"under two labels, {s.get('outliers', 0)} outliers, {s.get('single_image_labels', 0)} single-image "
             f"labels.</p>"]

    def cell(it, caption):
        return f"<div class='cell'>{img(it)}<br>{caption}</div>"

    parts.append(f"<h2>Suspected mislabels ({len(report['suspected_mislabels'])})</h2><p>Items whose "
                 f"{report['k']} nearest items all carry another label and whose own label's centroid is about as far as "
                 f"an unrelated label's (position under {report['mislabel_position']}: 1 = as near as the nearest "
                 f"other label, 0 = as far as a typical one).</p><table>")
    for m in report["suspected_mislabels"][:max_shown]:
        nb = "".join(cell(x, f"{e(x['label'])}<br>{x['score']:.3f}") for x in m["neighbours"])
        parts.append(f"<tr><td class='bad'>{cell(m, e(m['label']))}</td><td>labelled <b>{e(m['label'])}</b>; "
                     f"suggested <b class='sugg'>{e(m['suggested'])}</b><br>margin {m['margin']}, position {m['position']}<br>"
                     f"{e(str(m['path']))}</td><td>{nb}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>The same image under two labels ({len(report['same_image_two_labels'])})</h2><table>")
    for d in report["same_image_two_labels"][:max_shown]:
        parts.append("<tr>" + "".join(f"<td>{cell(x, e(x['label']) + '<br>' + e(str(x['path'])))}</td>"
                                      for x in d["items"]) + f"<td>{e(d['kind'])}, cosine {d['cosine']}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>Outliers ({len(report['outliers'])})</h2><p>Far from the rest of their label (robust z "
                 f"under -{report['outlier_z']}).</p><div>")
    parts += [cell(o, f"{e(o['label'])}<br>z {o['z']}" + (" (mislabel?)" if o["suspected_mislabel"] else ""))
              for o in report["outliers"][:max_shown]]
    parts.append("</div>")
    parts.append("<h2>Most confused label pairs</h2><table><tr><th>labels</th><th>leave-one-out answers of one "
                 "for the other</th><th>images</th></tr>")
    parts += [f"<tr><td>{e(p['labels'][0])} / {e(p['labels'][1])}</td><td>{p['count']} ({p['rate']:.0%})</td>"
              f"<td>{p['counts'][0]} / {p['counts'][1]}</td></tr>" for p in report["confused_pairs"]]
    parts.append("</table>")
    singles = report["single_image_labels"]
    parts.append(f"<h2>Single-image labels ({len(singles)})</h2><p>{e(', '.join(singles[:500]))}"
                 f"{' ...' if len(singles) > 500 else ''}</p>")
    parts.append("<h2>Labels</h2><table><tr><th>label</th><th>images</th><th>leave-one-out recall@1</th></tr>")
    parts += [f"<tr><td>{e(r['label'])}</td><td>{r['count']}</td><td>"
              f"{'' if r['loo_recall_at_1'] is None else r['loo_recall_at_1']}</td></tr>"
              for r in report["label_table"][:2000]]
    parts.append("</table></body></html>")
    guard.write_text(html_path, "\n".join(parts))
    return json_path, html_path
