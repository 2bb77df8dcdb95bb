#!/usr/bin/env python
"""`python tools/quantize.py ARGS` is `ppshitu quantize ARGS`:
the command is ppshitu/commands/quantize.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.quantize import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
