#!/usr/bin/env python
"""`python tools/similarity.py ARGS` is `ppshitu similarity ARGS`:
the command is ppshitu/commands/similarity.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.similarity import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
