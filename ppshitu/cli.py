"""The `-c config.yaml -o Section.key=value` command line shared by every tool."""
import argparse
import errno
import os
import re
import signal
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
        in_the_way = _file_in_the_way(e)
        if in_the_way:
            return in_the_way
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


def _made_folders(e):
    """Whether the OSError `e` was raised while making a folder (os.makedirs, os.mkdir, Path.mkdir): its
    traceback's innermost Python frame is one of them, or calls os.mkdir."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name in ("makedirs", "mkdir")


def _file_in_the_way(e):
    """For an OSError caused by a regular file where a folder must be (ENOTDIR: `x.jpg/state.sqlite` when
    x.jpg is a file; EEXIST from making the folder x.jpg), the line that says so, naming that file; else
    None. The system's own words ("Not a directory", "File exists") name neither the culprit nor the cause."""
    if e.errno not in (errno.ENOTDIR, errno.EEXIST) or e.filename is None:
        return None
    try:
        path = os.fsdecode(e.filename)
    except (TypeError, ValueError):
        return None
    if e.errno == errno.EEXIST:
        if _made_folders(e) and os.path.lexists(path) and not os.path.isdir(path):
            return f"{path}: is a file, not a folder (a path inside it was given, so it must be a folder)"
        return None
    parent = path
    while True:
        up = os.path.dirname(parent.rstrip(os.sep)) if parent.rstrip(os.sep) else ""
        if not up or up == parent:
            break
        parent = up
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return f"{path}: parent {parent} is a file, not a folder"
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"{path}: is a file, not a folder"
    return None


def run_main(main):
    """Run a tool's main(). An expected error (describe_error: ppshitu's, OS errors, text encodings)
    prints ONE line `error: ...` naming the file or value, and exits 2; a bug keeps its traceback.
    Ctrl-C (SIGINT) prints the one line `interrupted` and exits 130 (128 + SIGINT, as shells report it):
    what was being written stays as it was or is complete (every gallery, state and output write is
    atomic); a second Ctrl-C while threads wind down exits at once, without a word."""
    try:
        return main()
    except KeyboardInterrupt:
        _interrupted()
    except (PPShiTuError, OSError, UnicodeDecodeError, ValueError) as e:
        line = describe_error(e)
        if line is None:
            raise
        print("error: " + re.sub(r"\s*[\r\n]+\s*", " ", line.strip()), file=sys.stderr)
        sys.exit(2)


def _interrupted():
    try:  # a second Ctrl-C while worker threads finish (interpreter exit joins them): out at once, quietly
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    except ValueError:  # not the main thread
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    print("interrupted", file=sys.stderr)
    sys.exit(130)
