"""Choose IndexProcess.score_thres for a target precision, measured on the gallery's own items, and record it
in the gallery (the systems use it when the config leaves score_thres unset).

    python tools/calibrate_gallery.py -c configs/inference/inference_general.yaml \
        -o IndexProcess.index_dir=gallery/index [--precision 0.95] [--unknown-share 0.5] [--out DIR] [--no-record] [--queries crops]

Uses the stored vectors (no model, no image is read; --queries crops: the items pasted on photographs and
cropped, embedded by the rec model, so the threshold suits detector crops): each item queried against the rest (a same-label top-1
is right, another label wrong) and each label held out in turn (its items should come back unknown); see
ppshitu/gallery/calibrate.py. Writes DIR/calibration.json (the figures and the precision/recall curve) and
DIR/calibration.png (precision and recall versus threshold), DIR defaulting to Global.output_dir/calibration.
A gallery with fewer than two labels, or none with two images, keeps the default 0.5: the tool says why and
records nothing.
"""
import os

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import finite_float, int_range, ranged


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--precision", type=finite_float(0, 0.999, low_open=True, what="a precision"), default=None,
                   help="the precision score_thres must reach, between 0 and 1 exclusive (default: "
                        "IndexProcess.target_precision, 0.95)")
    p.add_argument("--unknown-share", type=finite_float(0, 1, high_open=True, what="a share of the queries"),
                   default=0.5,
                   help="share of queries that show objects the gallery lacks, for which precision is computed "
                        "(default 0.5; 0: every query shows a gallery object)")
    p.add_argument("--stale-fraction", type=finite_float(0, 10, low_open=True, what="a share of the gallery"),
                   default=0.2,
                   help="the value is stale once added + removed items exceed this share of the gallery (default 0.2)")
    p.add_argument("--max-queries", type=int_range(1, 10 ** 9, "queries"), default=20000,
                   help="query at most this many items (a seeded sample), each against the whole gallery")
    p.add_argument("--index", help="the gallery directory (default: IndexProcess.index_dir; another backend: its uri)")
    p.add_argument("--out", help="folder for calibration.json and calibration.png (default: "
                                 "Global.output_dir/calibration)")
    p.add_argument("--queries", choices=("gallery", "crops"), default=None,
                   help="(default: IndexProcess.calibration_queries, gallery) "
                        "gallery: the stored vectors queried against each other (no model); crops: the items pasted "
                        "on photographs and cropped as a detector would, embedded by Global.rec_inference_model_dir "
                        "(ppshitu/gallery/crop_queries.py: closer to what the system meets on photos)")
    p.add_argument("--crops", type=int_range(1, 10 ** 6, "crops"), default=600,
                   help="with --queries crops: how many crops (a seeded sample of items, several per item in a small "
                        "gallery)")
    p.add_argument("--no-record", action="store_true", help="measure and report only; leave the gallery unchanged")
    return ranged(p)


def main(argv=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    from ppshitu.errors import ConfigError
    from ppshitu.gallery import calibrate as cal
    from ppshitu.gallery.base import open_gallery
    from ppshitu.utils.outputs import OutputGuard

    ip = cfg.IndexProcess
    target = cal.check_target(args.precision if args.precision is not None
                              else ip.get("target_precision", cal.DEFAULT_TARGET_PRECISION),
                              "--precision" if args.precision is not None else "IndexProcess.target_precision")
    share = cal.check_share(args.unknown_share)
    if args.max_queries < 1:
        raise ConfigError(f"--max-queries must be >= 1, got {args.max_queries}")
    if args.index:
        ip["index_dir"] = args.index
    out = args.out or os.path.join(cfg.Global.output_dir, "calibration")
    json_path, png_path = os.path.join(out, "calibration.json"), os.path.join(out, "calibration.png")
    guard = OutputGuard(out, "--out" if args.out else "Global.output_dir")
    guard.check_all([json_path, png_path])  # before the measurement
    gallery = open_gallery(ip)
    try:
        if args.queries:
            ip["calibration_queries"] = args.queries
        crops = cal.crop_setup(cfg, args.crops)
        result = cal.calibrate_gallery(gallery, target, share, max_queries=args.max_queries,
                                       stale_fraction=args.stale_fraction, crops=crops)
        where = getattr(gallery, "index_dir", "")
        result["gallery"] = str(where)
        if not result["calibrated"]:
            print(f"not calibrated: {result['reason']}")
            print(f"score_thres stays {cal.DEFAULT_SCORE_THRES} (the documented default) unless the config sets it")
        else:
            kind = "cosine" if gallery.higher_is_better else "squared L2 distance"
            print(f"score_thres {result['score_thres']:g} ({kind}): precision {result['precision']} "
                  f"(90 % of label resamplings within {result['precision_interval']}), recall {result['recall']}, "
                  f"on {result['known_queries']} leave-one-out queries and {result['unknown_queries']} held-out-label "
                  f"queries ({result['unknown_share']:.0%} of queries unknown; queries: {result['queries']})")
            if "neighbourhood" in result:
                nb = result["neighbourhood"]
                print(f"IndexProcess.score neighbourhood: score_thres {nb['score_thres']:g}, precision "
                      f"{nb['precision']}, recall {nb['recall']}")
            for key in ("note", "warning"):
                if key in result:
                    print(f"{key}: {result[key]}")
            if not args.no_record:
                cal.record_calibration(gallery, result)
                print(f"recorded in {where} (version {getattr(gallery, 'version', None)}): used whenever "
                      f"IndexProcess.score_thres is unset")
        with guard:
            guard.write_json(json_path, result, indent=1)
            if result["calibrated"]:
                guard.write_bytes(png_path, cal.plot_png(result))
    finally:
        gallery.close()
    print(f"report: {json_path}" + (f" {png_path}" if result["calibrated"] else ""))
    return result


def cli(argv=None):
    """`ppshitu calibrate_gallery ARGS`, as `python tools/calibrate_gallery.py ARGS` runs: an expected error is
    one line, exit status 2."""
    run_main(lambda: main(argv))

