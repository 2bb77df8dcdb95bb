#!/usr/bin/env python
"""`python tools/convert_ppshitu_index.py ARGS` is `ppshitu convert_ppshitu_index ARGS`:
the command is ppshitu/commands/convert_ppshitu_index.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.convert_ppshitu_index import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
