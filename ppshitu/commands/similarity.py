"""How alike two images are: the verdict of find_duplicates' verified rule -- the same picture, edited /
the same object / similar / different -- with the RANSAC inlier count beside the embeddings' cosine.

    python tools/similarity.py -c configs/inference/inference_general.yaml a.jpg b.jpg [--folder DIR] [--json]

The two images are verified as find_duplicates verifies a candidate pair (local features + RANSAC, then
the aligned images compared tile by tile after a global gain/offset per channel:
ppshitu/library/verify.py). The rule is the one find_duplicates calibrated for --folder (its cache),
else the documented default (ppshitu/library/dupcalibrate.py). "The same object": the geometry agrees
but the content or the overlap does not (a near shot, a crop, a variant), or the embedding's cosine
reaches the model's calibrated same-object level; "similar": the cosine reaches its similar level
(ppshitu/library/calibration.json). --detect embeds the main objects; verification compares the whole
images.
"""
import json

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import finite_float, ranged

PRECISION = finite_float(0.5, 1, high_open=True, what="a precision")


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("a", help="an image")
    p.add_argument("b", help="another image")
    p.add_argument("--detect", action="store_true", help="compare the images' main objects (detector)")
    p.add_argument("--calibration", help="the model's cosine levels (default: ppshitu/library/calibration.json)")
    p.add_argument("--folder", help="use the duplicate rule find_duplicates calibrated for this folder (cached)")
    p.add_argument("--precision", type=PRECISION, default=0.95, help="with --folder: the target precision of "
                   "that calibration (default 0.95)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return ranged(p)


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.library import common, dupcalibrate
    from ppshitu.library.similarity import calibration_for, compare, thresholds, verified_verdict
    from ppshitu.utils.text import printable

    common.setup_tool(cfg)
    rec, det = common.predictors(cfg, detect=args.detect, rec=rec, det=det)
    fingerprint = common.model_id(rec)
    out = compare(cfg, rec, args.a, args.b, det=det)
    entry = calibration_for(fingerprint, args.calibration)
    cal = dupcalibrate.cached(args.folder, fingerprint, args.precision, None) if args.folder else None
    rule = dupcalibrate.rule_of(cal)[0] if cal else dupcalibrate.DEFAULT_RULE
    rule_from = (f"calibrated for {args.folder} ({cal['cached']})" if cal else
                 ("the documented default: no calibration cached for --folder (run find_duplicates on it)"
                  if args.folder else "the documented default (--folder DIR: the rule calibrated for a folder)"))
    name = verified_verdict(out, rule, entry)
    out.update(verdict=name, rule={**rule.as_dict(), "from": rule_from}, model_fingerprint=fingerprint,
               detect=bool(args.detect), thresholds=thresholds(entry) if entry else None,
               calibration=entry.get("measured_on") if entry else None)
    if args.json:
        print(json.dumps(out, indent=1))
        return out
    for side in ("a", "b"):
        if out[side]["box"] is not None:
            print(f"main object of {printable(out[side]['path'])}: {[round(v, 1) for v in out[side]['box']]}")
    e = out["evidence"]
    how = {"features": f"{e['inliers']} RANSAC inliers of {e['matches']} matches",
           "frame": f"{e['inliers']} RANSAC inliers; aligned as one frame (ECC {e['ecc']:.2f})"}.get(
        e["aligned"], f"{e['inliers']} RANSAC inliers: not aligned")
    print(f"cosine similarity: {out['cosine']:.4f}    inliers: {e['inliers']}")
    if e["aligned"]:
        print(f"verification: {how}; overlap {e['overlap']:.0%}; worst tile {e['local']:.1%} of its pixels "
              f"disagreeing; mean residual {e['global']:.3f} x contrast")
    else:
        print(f"verification: {how}")
    t = out["thresholds"]
    levels = (f"; the same object >= cosine {t['same_object']:.3f}, similar >= {t['similar']:.3f}" if t else
              f"; no cosine levels for model {fingerprint} (python -m ppshitu.library.calibrate measures them)")
    print(f"verdict: {name}  (the same picture, edited: {rule.describe()}; {rule_from}{levels})")
    return out


def cli(argv=None):
    """`ppshitu similarity ARGS`, as `python tools/similarity.py ARGS` runs: an expected error is one line, exit status
    2."""
    run_main(lambda: main(argv))
