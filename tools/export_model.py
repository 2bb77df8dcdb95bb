#!/usr/bin/env python
"""Export trained weights to an inference directory (program, weights, inference.yml):

    python tools/export_model.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml \
        -o Global.pretrained_model=output/RecModel/best_model -o Global.save_inference_dir=inference/rec
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main  # noqa: E402
from ppshitu.schemas import TRAIN_SCHEMA  # noqa: E402


def main():
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: Global.save_inference_dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_cli_config(args, TRAIN_SCHEMA)
    apply_threads(cfg)
    from ppshitu.tasks import task_for  # imports paddle: after the thread count is set
    out = task_for(cfg).export(cfg, args.out or cfg.Global.save_inference_dir)
    print(out)


if __name__ == "__main__":
    run_main(main)
