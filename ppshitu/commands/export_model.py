"""Export trained weights to an inference directory (program, weights, inference.yml):

    python tools/export_model.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml \
        -o Global.pretrained_model=output/RecModel/best_model -o Global.save_inference_dir=inference/rec
"""
import logging

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import TRAIN_SCHEMA


def main(argv=None):
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: Global.save_inference_dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing model directory (never a folder that is not one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_cli_config(args, TRAIN_SCHEMA)
    out_dir = args.out or cfg.Global.save_inference_dir
    from ppshitu.infer.spec import check_model_out_dir
    check_model_out_dir(out_dir, args.overwrite)  # before any work: a user's folder or files are never replaced
    apply_threads(cfg)
    from ppshitu.tasks import task_for  # imports paddle: after the thread count is set
    out = task_for(cfg).export(cfg, out_dir)
    print(out)


def cli(argv=None):
    """`ppshitu export_model ARGS`, as `python tools/export_model.py ARGS` runs: an expected error is one line, exit
    status 2."""
    run_main(lambda: main(argv))
