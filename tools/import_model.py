#!/usr/bin/env python
"""`python tools/import_model.py ARGS` is `ppshitu import_model ARGS`:
the command is ppshitu/commands/import_model.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.import_model import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
