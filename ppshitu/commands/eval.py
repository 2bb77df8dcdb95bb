"""Evaluate weights on the config's evaluation data (retrieval: Recall@k, mAP, MAP@R):

    python tools/eval.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml -o Global.pretrained_model=output/RecModel/best_model
"""
import json
import logging

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import TRAIN_SCHEMA


def main(argv=None):
    args = config_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_cli_config(args, TRAIN_SCHEMA)
    apply_threads(cfg)
    from ppshitu.tasks import task_for  # imports paddle: after the thread count is set
    metrics = task_for(cfg).evaluate(cfg)
    print(json.dumps(metrics))


def cli(argv=None):
    """`ppshitu eval ARGS`, as `python tools/eval.py ARGS` runs: an expected error is one line, exit status 2."""
    run_main(lambda: main(argv))
