#!/usr/bin/env python
"""`python tools/find_duplicates.py ARGS` is `ppshitu find_duplicates ARGS`:
the command is ppshitu/commands/find_duplicates.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.find_duplicates import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
