#!/usr/bin/env python
"""`python tools/migrate_gallery.py ARGS` is `ppshitu migrate_gallery ARGS`:
the command is ppshitu/commands/migrate_gallery.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.commands.migrate_gallery import cli, main  # noqa: E402,F401  (main: what tests and scripts import)

if __name__ == "__main__":
    cli()
