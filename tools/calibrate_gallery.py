#!/usr/bin/env python
"""`python tools/calibrate_gallery.py ARGS` is `ppshitu calibrate_gallery ARGS`:
the command is ppshitu/commands/calibrate_gallery.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.calibrate_gallery import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
