"""Train a model from a config (recognition or detection, chosen by Arch):

    python tools/train.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml [-o Global.epochs=5 ...]
    python tools/train.py -c ... -o Global.checkpoints=output/RecModel/epoch_5      # resume
    python -m paddle.distributed.launch --gpus 0,1 tools/train.py -c ... -o Global.device=gpu
"""
import logging

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import TRAIN_SCHEMA


def main(argv=None):
    args = config_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_cli_config(args, TRAIN_SCHEMA)
    apply_threads(cfg)
    from ppshitu.tasks import task_for  # imports paddle: after the thread count is set
    task_for(cfg).train(cfg)


def cli(argv=None):
    """`ppshitu train ARGS`, as `python tools/train.py ARGS` runs: an expected error is one line, exit status 2."""
    run_main(lambda: main(argv))
