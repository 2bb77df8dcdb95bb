"""`python -m ppshitu <command> [args]`: the `ppshitu` command (ppshitu/cli_main.py)."""
import sys

from .cli_main import main

sys.exit(main())
