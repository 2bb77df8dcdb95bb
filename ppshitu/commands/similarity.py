"""How alike two images are: the cosine similarity of their embeddings (the whole images, or their
main objects with --detect) and a verdict — near-duplicate / same object / similar / different —
whose thresholds were measured for the model (ppshitu/library/calibration.json).

    python tools/similarity.py -c configs/inference/inference_general.yaml a.jpg b.jpg [--detect] [--json]
"""
import json

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import ranged


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("a", help="an image")
    p.add_argument("b", help="another image")
    p.add_argument("--detect", action="store_true", help="compare the images' main objects (detector)")
    p.add_argument("--calibration", help="calibration file (default: ppshitu/library/calibration.json)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return ranged(p)  # (no numeric flag yet: one added gets its range checked)


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.library import common
    from ppshitu.library.similarity import calibration_for, compare, thresholds, verdict
    from ppshitu.utils.text import printable

    common.setup_tool(cfg)
    rec, det = common.predictors(cfg, detect=args.detect, rec=rec, det=det)
    fingerprint = common.model_id(rec)
    out = compare(cfg, rec, args.a, args.b, det=det)
    entry = calibration_for(fingerprint, args.calibration)
    name, rule = verdict(out["cosine"], entry, out["phash_distance"])
    out.update(verdict=name, model_fingerprint=fingerprint, detect=bool(args.detect),
               thresholds=thresholds(entry) if entry else None,
               calibration=entry.get("measured_on") if entry else None)
    if args.json:
        print(json.dumps(out, indent=1))
        return out
    for side in ("a", "b"):
        if out[side]["box"] is not None:
            print(f"main object of {printable(out[side]['path'])}: {[round(v, 1) for v in out[side]['box']]}")
    print(f"cosine similarity: {out['cosine']:.4f}")
    if out["phash_distance"] is not None:
        print(f"pHash distance: {out['phash_distance']} of 64 bits")
    if entry is None:
        print(f"verdict: none — no calibration for model {fingerprint} (python -m ppshitu.library.calibrate -c "
              f"CONFIG measures one)")
    else:
        t = out["thresholds"]
        hybrid = entry["thresholds"].get("near_duplicate_with_phash")
        nd = f"near-duplicate >= {t['near_duplicate']:.3f}"
        if hybrid and out["phash_distance"] is not None:
            nd = (f"near-duplicate >= {hybrid['cosine_alone']:.3f}, or >= {hybrid['cosine_candidate']:.3f} with "
                  f"pHash distance <= {hybrid['phash_max_hamming']}")
        print(f"verdict: {name}  ({nd}; same object >= {t['same_object']:.3f}; similar >= {t['similar']:.3f}; "
              f"thresholds measured by ppshitu/library/calibrate.py on {entry.get('date', '?')})")
    return out


def cli(argv=None):
    """`ppshitu similarity ARGS`, as `python tools/similarity.py ARGS` runs: an expected error is one line, exit status
    2."""
    run_main(lambda: main(argv))
