#!/usr/bin/env python
"""`python tools/predict_system.py ARGS` is `ppshitu predict_system ARGS`:
the command is ppshitu/commands/predict_system.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.predict_system import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
