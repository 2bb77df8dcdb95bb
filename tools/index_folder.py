#!/usr/bin/env python
"""`python tools/index_folder.py ARGS` is `ppshitu index_folder ARGS`:
the command is ppshitu/commands/index_folder.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.index_folder import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
