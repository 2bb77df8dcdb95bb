#!/usr/bin/env python
"""`python tools/gallery_doctor.py ARGS` is `ppshitu gallery_doctor ARGS`:
the command is ppshitu/commands/gallery_doctor.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.gallery_doctor import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
