#!/usr/bin/env python
"""`python tools/eval_system.py ARGS` is `ppshitu eval_system ARGS`:
the command is ppshitu/commands/eval_system.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.eval_system import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
