"""Measure the similarity verdict's thresholds for a recognition model and store them in
ppshitu/library/calibration.json (under the model's fingerprint, with what chose each one).

    python -m ppshitu.library.calibrate -c configs/inference/inference_general.yaml \
        [-o Global.rec_inference_model_dir=models/demo/rec] [--data data/demo/rec] [--out FILE]

Measured on:

* the demo's unseen classes (the test classes of `dataset/make_synthetic.py`'s recognition set, which
  the demo model never trained on; `--data` names the set, else data/demo/rec, else it is generated
  with the demo's parameters): cosines of same-class pairs (different pictures of one object) and of
  different-class pairs;
* near-duplicates: each of those images edited once (ppshitu/library/photos.py: low-quality JPEG,
  resize, 10 % crop, brightness/contrast, small rotation, two of them), and scikit-image photos of
  the calibration sets (`photos.CALIBRATION_PHOTOS` and `CALIBRATION_TEXTURES`; the benchmark uses
  other photos) with crops of them as further distinct images, half of the subject images with three
  edited copies each, a third of the texture ones with two. Every image goes through JPEG (quality
  92) as a photo file would.

Rules (each threshold stored with its rule and what it gives):

* same_object: the lowest cosine passed by at most 1 % of different-class pairs;
* similar: the equal-error point of same-class vs different-class pairs;
* near_duplicate_with_phash (find_duplicates' default): a pair is a near-duplicate when its cosine
  reaches `cosine_alone`, or reaches `cosine_candidate` and its pHash Hamming distance is at most
  `phash_max_hamming` — embeddings see through crops and rotations, which move a pHash, and the
  pHash sees layout, which a globally pooled embedding does not (two crops of one texture, a
  re-encoded photo); the three are chosen together for max F1 on all near-duplicate calibration
  pairs pooled (edited object crops, subject photos, textures);
* near_duplicate: the cosine alone that maximises F1 of near-duplicate pairs against every other
  pair, on the same pooled pairs (the same rule picks the pHash Hamming distance the duplicate
  benchmark compares against). What each rule does on the edited object crops alone, where other
  pictures of the same object are the competing pairs, is stored beside it (`on_object_crops`).
"""
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAME_OBJECT_FPR = 0.01
DEMO_SET = dict(num_classes=60, views_per_class=8, image_size=96, num_train_classes=40, gallery_views=3, seed=0)


# ------------------------------------------------------------------ threshold rules
def fpr_threshold(negatives, fpr):
    """The lowest t with mean(negatives >= t) <= fpr."""
    neg = np.sort(np.asarray(negatives, np.float64))
    if not len(neg):
        return 1.0
    allowed = int(np.floor(fpr * len(neg)))  # this many negatives may pass
    t = neg[len(neg) - allowed - 1]          # the largest negative that must fail
    return float(np.nextafter(t, np.inf))


def eer_threshold(positives, negatives):
    """(threshold, error rate) where the miss rate of positives meets the pass rate of negatives."""
    pos, neg = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    cands = np.unique(np.concatenate([pos, neg]))
    miss = np.searchsorted(np.sort(pos), cands, side="left") / len(pos)
    fa = 1.0 - np.searchsorted(np.sort(neg), cands, side="left") / len(neg)
    i = int(np.argmin(np.abs(miss - fa)))
    return float(cands[i]), float((miss[i] + fa[i]) / 2)


def best_f1_threshold(scores, is_pos, higher_is_better=True):
    """(threshold, f1, precision, recall) maximising F1 of `score >= t` (or `<= t`) over pairs."""
    s = np.asarray(scores, np.float64) * (1 if higher_is_better else -1)
    y = np.asarray(is_pos, bool)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]       # thresholds between distinct scores only
    tp, fp, ts = tp[last], fp[last], s[last]
    prec, rec = tp / np.maximum(tp + fp, 1), tp / max(1, y.sum())
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    i = int(np.argmax(f1))
    t = ts[i] if higher_is_better else -ts[i]
    return float(t), float(f1[i]), float(prec[i]), float(rec[i])


def _pair_scores(pred, truth):
    tp = int((pred & truth).sum())
    p, r = tp / max(1, int(pred.sum())), tp / max(1, int(truth.sum()))
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-12), 4)}


def rates(pos, neg, t):
    return {"positives_passing": round(float(np.mean(np.asarray(pos) >= t)), 4),
            "negatives_passing": round(float(np.mean(np.asarray(neg) >= t)), 4)}


def percentiles(x):
    x = np.asarray(x, np.float64)
    return {f"p{p}": round(float(np.percentile(x, p)), 4) for p in (1, 5, 25, 50, 75, 95, 99)} | {"n": int(len(x))}


# ------------------------------------------------------------------ data
def demo_unseen(data=None):
    """[(rgb, class)] of the demo recognition set's unseen (test) classes."""
    from ..utils.image import read_image

    root = data or os.path.join(ROOT, "data", "demo", "rec")
    if not os.path.isfile(os.path.join(root, "test_list.txt")):
        sys.path.insert(0, ROOT)
        from dataset.synthetic import make_recognition_set

        root = os.path.join(ROOT, "bench", ".cache", "demo_rec")
        if not os.path.isfile(os.path.join(root, "test_list.txt")):
            make_recognition_set(root, **DEMO_SET)
    from ..utils.files import MAX_LIST_BYTES, read_input_text

    text = read_input_text(os.path.join(root, "test_list.txt"), "list file", MAX_LIST_BYTES)
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return [(read_image(os.path.join(root, r[0])), int(r[1])) for r in rows], root


def as_photo(rgb):
    """What a photo file of `rgb` decodes to (JPEG quality 92)."""
    from PIL import Image
    import io

    from .photos import jpeg_bytes
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(rgb, 92))).convert("RGB"))


def near_duplicate_sets(unseen, seed=0):
    """[(name, [rgb], families, edits)]: the unseen-class images each edited once, and the calibration
    photos with crops and edited copies."""
    from . import photos

    rng = np.random.default_rng(seed)
    synth_imgs, synth_fam, synth_edit = [], [], []
    kinds = photos.EDITS
    for i, (rgb, _) in enumerate(unseen):
        synth_imgs += [rgb, photos.edit(rgb, kinds[i % len(kinds)], rng)]
        synth_fam += [i, i]
        synth_edit += [None, kinds[i % len(kinds)]]
    distinct = photos.distinct_images(photos.CALIBRATION_PHOTOS, 16, rng, size=256)
    real = photos.near_duplicate_set(distinct, len(distinct) // 2, 3, rng)
    textures = photos.distinct_images(photos.CALIBRATION_TEXTURES, 10, rng, size=256)
    real += [(n, x, len(distinct) + f, e)  # (family numbers after the photos')
             for n, x, f, e in photos.near_duplicate_set(textures, len(textures) // 3, 2, rng)]
    return [("synthetic objects", synth_imgs, synth_fam, synth_edit),
            ("calibration photos", [r[1] for r in real], [r[2] for r in real], [r[3] for r in real])]


def pair_table(vectors, families, hashes=None):
    """Upper-triangle pairs: cosine, is-duplicate, pHash distance."""
    iu = np.triu_indices(len(vectors), 1)
    cos = (vectors @ vectors.T)[iu]
    fam = np.asarray(families)
    pos = fam[iu[0]] == fam[iu[1]]
    ham = None
    if hashes is not None:
        hb = np.asarray(hashes, bool)
        ham = (hb[:, None, :] != hb[None, :, :]).sum(-1)[iu]
    return cos, pos, ham, iu


def phash_bits(rgbs):
    from PIL import Image

    from .duplicates import phash_image
    return [phash_image(Image.fromarray(x)) for x in rgbs]


def best_hybrid(cos, ham, is_pos):
    """(cosine_alone, cosine_candidate, max_hamming, f1, precision, recall) maximising F1 of
    `cos >= alone or (cos >= candidate and ham <= max_hamming)`; ties go to the strictest rule."""
    y = np.asarray(is_pos, bool)
    best = None
    for alone in np.round(np.arange(0.90, 0.9951, 0.005), 3):
        for cand in np.round(np.arange(0.50, alone, 0.025), 3):
            for h in range(4, 33, 2):
                pred = (cos >= alone) | ((cos >= cand) & (ham <= h))
                tp = int((pred & y).sum())
                p, r = tp / max(1, int(pred.sum())), tp / max(1, int(y.sum()))
                f1 = 2 * p * r / max(p + r, 1e-12)
                key = (round(f1, 6), alone, cand, -h)
                if best is None or key > best[0]:
                    best = (key, (float(alone), float(cand), int(h), f1, p, r))
    return best[1]


# ------------------------------------------------------------------ calibration
def calibrate(cfg, rec, data=None, seed=0, log=print):
    """(the model's fingerprint, its calibration entry): the thresholds and what chose them (module docstring)."""
    from . import common

    t0 = time.time()
    unseen, data_root = demo_unseen(data)
    labels, same_cos, diff_cos = _class_pairs(rec, unseen)
    t_same = fpr_threshold(diff_cos, SAME_OBJECT_FPR)
    t_sim, eer = eer_threshold(same_cos, diff_cos)
    log(f"unseen classes: {len(set(labels.tolist()))} classes, {len(unseen)} images; same-class pairs "
        f"{len(same_cos)}, different-class {len(diff_cos)}")
    all_cos, all_pos, all_ham, per_edit, sets_info = _near_duplicate_pairs(rec, unseen, seed)
    near_duplicate, with_phash, phash = _duplicate_rules(same_cos, all_cos, all_pos, all_ham, per_edit)
    cos_nd, pos_nd = np.concatenate(all_cos), np.concatenate(all_pos)

    fingerprint = common.model_id(rec)
    g = cfg["Global"]
    entry = {
        "model_dir": os.path.relpath(os.path.abspath(g.get("rec_inference_model_dir") or ""), ROOT),
        "embedding_size": int(rec.embedding_size),
        "produced_by": "python -m ppshitu.library.calibrate -c <config> (ppshitu/library/calibrate.py)",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - t0, 1),
        "measured_on": {
            "unseen_classes": {"data": os.path.relpath(data_root, ROOT), "classes": int(len(set(labels.tolist()))),
                               "images": len(unseen), "same_class_pairs": int(len(same_cos)),
                               "different_class_pairs": int(len(diff_cos))},
            "near_duplicates": sets_info,
            "note": "whole images; with --detect the main objects are compared, which the unseen-class images "
                    "(object crops) stand for",
        },
        "thresholds": {
            "near_duplicate": near_duplicate,
            "near_duplicate_with_phash": with_phash,
            "same_object": {"cosine": round(t_same, 4),
                            "rule": f"at most {SAME_OBJECT_FPR:.0%} of different-class pairs pass",
                            **rates(same_cos, diff_cos, t_same)},
            "similar": {"cosine": round(t_sim, 4), "rule": "equal error rate, same-class vs different-class pairs",
                        "equal_error_rate": round(eer, 4), **rates(same_cos, diff_cos, t_sim)},
        },
        "phash": phash,
        "distributions": {"same_class": percentiles(same_cos), "different_class": percentiles(diff_cos),
                          "near_duplicate": percentiles(cos_nd[pos_nd]),
                          "not_duplicate": percentiles(cos_nd[~pos_nd])},
    }
    return fingerprint, entry


def _class_pairs(rec, unseen):
    """(class labels, cosines of same-class pairs, of different-class pairs) of the unseen-class images."""
    vec = np.asarray(rec.predict([as_photo(x) for x, _ in unseen]), np.float32)
    labels = np.asarray([c for _, c in unseen])
    cos, same, _, _ = pair_table(vec, labels)
    return labels, cos[same], cos[~same]


def _near_duplicate_pairs(rec, unseen, seed):
    """Per near-duplicate set (near_duplicate_sets): the cosines, is-duplicate flags and pHash distances of
    its pairs; the calibration photos' duplicate pairs by edit ({edit: [(cosines, distances)]}); what each
    set holds."""
    all_cos, all_pos, all_ham, per_edit = [], [], [], {}
    sets_info = []
    for name, imgs, fams, edits in near_duplicate_sets(unseen, seed):
        imgs = [as_photo(x) for x in imgs]
        v = np.asarray(rec.predict(imgs), np.float32)
        c, p, h, iu = pair_table(v, fams, phash_bits(imgs))
        all_cos.append(c), all_pos.append(p), all_ham.append(h)
        ed = np.asarray([e or "" for e in edits], object)
        kind = np.where(ed[iu[0]] != "", ed[iu[0]], ed[iu[1]])
        for k in set(e for e in edits if e):
            sel = p & (kind == k)
            if name == "calibration photos":
                per_edit.setdefault(k, []).append((c[sel], h[sel]))
        sets_info.append({"name": name, "images": len(imgs), "duplicate_pairs": int(p.sum()),
                          "other_pairs": int((~p).sum())})
    return all_cos, all_pos, all_ham, per_edit, sets_info


def _duplicate_rules(same_cos, all_cos, all_pos, all_ham, per_edit):
    """The entries thresholds.near_duplicate, thresholds.near_duplicate_with_phash and phash: each rule's
    threshold from every calibration pair pooled (object crops, subject photos, textures), and what it does
    on the object crops alone (the first set) and per edit."""
    cos_ph, pos_ph, ham_ph = np.concatenate(all_cos), np.concatenate(all_pos), np.concatenate(all_ham)
    t_dup, f1, prec, recall = best_f1_threshold(cos_ph, pos_ph)
    h_dup, hf1, hprec, hrecall = best_f1_threshold(ham_ph, pos_ph, higher_is_better=False)
    a_hi, a_lo, a_h, af1, aprec, arecall = best_hybrid(cos_ph, ham_ph, pos_ph)
    on_objects = {"embedding": _pair_scores(all_cos[0] >= t_dup, all_pos[0]),
                  "phash": _pair_scores(all_ham[0] <= h_dup, all_pos[0]),
                  "same_class_pairs_passing": round(float(np.mean(same_cos >= t_dup)), 4),
                  "embedding_and_phash": _pair_scores((all_cos[0] >= a_hi) | ((all_cos[0] >= a_lo)
                                                                              & (all_ham[0] <= a_h)), all_pos[0])}
    by_edit = {}
    for k, parts in sorted(per_edit.items()):
        c = np.concatenate([a for a, _ in parts])
        h = np.concatenate([b for _, b in parts])
        by_edit[k] = {"pairs": int(len(c)), "embedding_recall": round(float(np.mean(c >= t_dup)), 4),
                      "phash_recall": round(float(np.mean(h <= h_dup)), 4)}
    near_duplicate = {"cosine": round(t_dup, 4),
                      "rule": "max F1 of near-duplicate pairs vs all other pairs, every calibration set pooled",
                      "f1": round(f1, 4), "precision": round(prec, 4), "recall": round(recall, 4),
                      "recall_by_edit": by_edit, "on_object_crops": on_objects}
    with_phash = {
        "cosine_alone": a_hi, "cosine_candidate": a_lo, "phash_max_hamming": a_h,
        "rule": "a pair is a near-duplicate when cos >= cosine_alone, or cos >= cosine_candidate and the "
                "pHash Hamming distance <= phash_max_hamming; the three chosen together for max F1 on every "
                "near-duplicate calibration set pooled (ties: the strictest)",
        "f1": round(af1, 4), "precision": round(aprec, 4), "recall": round(arecall, 4)}
    phash = {"max_hamming": int(round(h_dup)), "bits": 64, "on_object_crops": on_objects["phash"],
             "rule": "the same max-F1 rule on the same pairs (imagehash.phash, 8x8)",
             "f1": round(hf1, 4), "precision": round(hprec, 4), "recall": round(hrecall, 4)}
    return near_duplicate, with_phash, phash


def save(fingerprint, entry, path=None):
    from .similarity import CALIBRATION, FORMAT, load_calibration

    path = path or CALIBRATION
    data = load_calibration(path)
    data["models"][fingerprint] = entry
    data["format"] = FORMAT
    data["about"] = ("similarity thresholds per model fingerprint; made by ppshitu/library/calibrate.py "
                     "(see its docstring for the data and rules)")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def main(argv=None):
    sys.path.insert(0, ROOT)
    from ..cli import config_parser, load_cli_config, run_main  # noqa: F401
    from ..schemas import INFER_SCHEMA
    from . import common

    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--data", help="a recognition set (test_list.txt of unseen classes); default data/demo/rec")
    p.add_argument("--out", help="calibration file to update (default ppshitu/library/calibration.json)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    common.setup_tool(cfg)
    rec, _ = common.predictors(cfg, detect=False)
    fingerprint, entry = calibrate(cfg, rec, args.data, args.seed)
    path = save(fingerprint, entry, args.out)
    t = entry["thresholds"]
    print(json.dumps({"model": fingerprint, "near_duplicate": t["near_duplicate"]["cosine"],
                      "near_duplicate_with_phash": {k: t["near_duplicate_with_phash"][k] for k in
                                                    ("cosine_alone", "cosine_candidate", "phash_max_hamming")},
                      "same_object": t["same_object"]["cosine"], "similar": t["similar"]["cosine"],
                      "phash_max_hamming": entry["phash"]["max_hamming"]}, indent=1))
    print(f"written: {path}")
    return entry


if __name__ == "__main__":
    from ..cli import run_main
    run_main(main)
