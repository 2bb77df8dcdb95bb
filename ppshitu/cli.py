"""The `-c config.yaml -o Section.key=value` command line shared by every tool."""
import argparse
import os
import sys

from .config import load_config
from .errors import PPShiTuError


def config_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. -o Global.epochs=5 (repeatable)")
    return parser


def load_cli_config(args, schema):
    return load_config(args.config, args.override, schema)


def apply_threads(cfg):
    """Global.num_threads -> OMP_NUM_THREADS; effective only before paddle is imported."""
    threads = (cfg.get("Global") or {}).get("num_threads")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def run_main(main):
    """Run a tool's main(); a user error prints one clear line and exits 2, not a traceback."""
    try:
        return main()
    except PPShiTuError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
