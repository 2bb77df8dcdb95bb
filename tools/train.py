#!/usr/bin/env python
"""Train a model from a config (recognition or detection, chosen by Arch):

    python tools/train.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml [-o Global.epochs=5 ...]
    python tools/train.py -c ... -o Global.checkpoints=output/RecModel/epoch_5      # resume
    python -m paddle.distributed.launch --gpus 0,1 tools/train.py -c ... -o Global.device=gpu
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main  # noqa: E402
from ppshitu.schemas import TRAIN_SCHEMA  # noqa: E402


def main():
    args = config_parser(__doc__.splitlines()[0]).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_cli_config(args, TRAIN_SCHEMA)
    apply_threads(cfg)
    from ppshitu.tasks import task_for  # imports paddle: after the thread count is set
    task_for(cfg).train(cfg)


if __name__ == "__main__":
    run_main(main)
