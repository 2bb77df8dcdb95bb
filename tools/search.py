#!/usr/bin/env python
"""`python tools/search.py ARGS` is `ppshitu search ARGS`:
the command is ppshitu/commands/search.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.search import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
