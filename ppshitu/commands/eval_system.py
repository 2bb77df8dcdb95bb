"""Score the recognition system on labelled scenes: precision, recall, F1 and unknown rejection.

    python tools/eval_system.py -c configs/inference/inference_general.yaml \
        --scenes data/demo/scenes/val.json [--limit N] [--image-root DIR] [-o Global.output_dir=...]

The scenes json is COCO with each annotation's `object_name` (dataset/make_synthetic.py scenes);
its images are read from --image-root (default: the json's folder + images/), not Global.infer_imgs.
Prints a table and writes the metrics to Global.output_dir/eval_system.json. Exits 2 when no
scene image could be read (nothing evaluated), instead of writing NaN metrics.
"""
import logging
import math
import os
import sys

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.errors import PPShiTuError
from ppshitu.schemas import INFER_SCHEMA

METRICS = ("precision", "recall", "f1", "unknown_rejection")
COUNTS = ("images", "tp", "fp", "fn", "known_objects", "unknown_objects", "unknown_rejected", "skipped_images",
          "skipped_boxes")


def format_table(metrics):
    lines = [f"{k:<18} {metrics[k]:>8.3f}" for k in METRICS if k in metrics]
    lines += [f"{k:<18} {metrics[k]:>8d}" for k in COUNTS if k in metrics]
    return "\n".join(lines)


def main(argv=None):
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--scenes", required=True, help="COCO json of labelled scenes (object_name per box)")
    parser.add_argument("--image-root", default=None, help="folder of the scene images (default: <json dir>/images)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N scenes")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.limit is not None and args.limit < 1:
        raise PPShiTuError(f"--limit must be >= 1, got {args.limit}")
    from ppshitu.utils.files import check_input_file

    # a regular file (a FIFO is said to be one, not "no such file"), checked before any model loads
    check_input_file(args.scenes, "--scenes", PPShiTuError, missing=f"--scenes {args.scenes}: no such file")
    cfg = load_cli_config(args, INFER_SCHEMA)
    from ppshitu.utils.outputs import OutputGuard

    OutputGuard(cfg.Global.output_dir, "Global.output_dir").check(
        os.path.join(cfg.Global.output_dir, "eval_system.json"))  # refuse before the evaluation, not after

    from ppshitu.evaluation.system_metrics import evaluate_system
    from ppshitu.system import RecognitionSystem

    from ppshitu.utils.image import set_max_image_pixels

    set_max_image_pixels(cfg.Global.max_image_pixels)
    system = RecognitionSystem.from_config(cfg)
    metrics = evaluate_system(system, args.scenes, limit=args.limit, progress=not args.no_progress,
                              image_root=args.image_root)
    metrics.update(scenes=os.path.abspath(args.scenes), gallery_labels=len(system.gallery.labels()))
    print(format_table(metrics))
    out_path = os.path.join(cfg.Global.output_dir, "eval_system.json")
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    with OutputGuard(cfg.Global.output_dir, "Global.output_dir") as guard:  # never over a file ppshitu did not write
        guard.write_json(out_path, clean, indent=1)
    print(f"metrics written to {out_path}")
    return 0


def cli(argv=None):
    """`ppshitu eval_system ARGS`, as `python tools/eval_system.py ARGS` runs: an expected error is one line, exit
    status 2; otherwise the exit status main() returns."""
    sys.exit(run_main(lambda: main(argv)))
