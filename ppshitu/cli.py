"""The `-c config.yaml -o Section.key=value` command line shared by every tool."""
import argparse
import errno
import os
import re
import sys

from .config import load_config
from .errors import PPShiTuError


def config_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. -o Global.epochs=5 (repeatable)")
    return parser


def load_cli_config(args, schema):
    return load_config(args.config, args.override, schema)


def apply_threads(cfg):
    """Global.num_threads -> OMP_NUM_THREADS; effective only before paddle is imported."""
    threads = (cfg.get("Global") or {}).get("num_threads")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def describe_error(e):
    """One line for an expected error: ppshitu's own (which name their file, key or value), an OS error
    (disk full, name too long, a symlink loop, a directory where a file was expected ...: the file and
    the system's reason), text that is not UTF-8, a NUL byte in a path. None for anything else (a bug)."""
    if isinstance(e, PPShiTuError):
        return str(e)
    if isinstance(e, OSError):
        reason = e.strerror or str(e) or type(e).__name__
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason += " (free some space, or write elsewhere)"
        names = [str(n) for n in (e.filename, e.filename2) if n is not None]
        return f"{' -> '.join(names)}: {reason}" if names else reason
    if isinstance(e, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({e.reason} at byte {e.start}: {e.object[e.start:e.start + 4]!r}); "
                f"save it as UTF-8")
    if isinstance(e, ValueError) and "null" in str(e).lower() and ("byte" in str(e) or "character" in str(e)):
        return f"a path contains a NUL byte ({e}): a list or argument with binary content?"
    return None


def run_main(main):
    """Run a tool's main(). An expected error (describe_error: ppshitu's, OS errors, text encodings)
    prints ONE line `error: ...` naming the file or value, and exits 2; a bug keeps its traceback."""
    try:
        return main()
    except (PPShiTuError, OSError, UnicodeDecodeError, ValueError) as e:
        line = describe_error(e)
        if line is None:
            raise
        print("error: " + re.sub(r"\s*[\r\n]+\s*", " ", line.strip()), file=sys.stderr)
        sys.exit(2)
