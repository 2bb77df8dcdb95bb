"""`ppshitu <command> [args]` (the console script; also `python -m ppshitu`): one command per tool.

    ppshitu build_gallery -c configs/inference/build_gallery.yaml -o IndexProcess.index_operation=append
    ppshitu predict_system -c configs/inference/inference_general.yaml -o Global.infer_imgs=photos/
    ppshitu serve -c configs/inference/inference_general.yaml --port 8866
    ppshitu help build_gallery           # = ppshitu build_gallery --help

`ppshitu NAME ARGS` runs exactly what `python tools/NAME.py ARGS` runs (`serve`: deploy/serve.py; `export`:
tools/export_model.py): the same parser, output, files and exit status. The commands live in ppshitu/commands/;
`demo` needs a checkout of the repository (its configs/, models/demo/ and dataset/).
"""
import difflib
import os
import sys

from . import __version__
from .commands import ALIASES, COMMANDS

# the checkout this package sits in, if any (an installed wheel has no tools/ beside it)
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def usage():
    width = max(map(len, COMMANDS)) + 2
    lines = [f"usage: ppshitu <command> [args]   (ppshitu <command> --help, or ppshitu help <command>: its options)",
             "", f"ppshitu {__version__}: open-set image recognition by retrieval (PP-ShiTu style)", "", "commands:"]
    for name, (_, script, summary) in COMMANDS.items():
        lines.append(f"  {name:<{width}}{summary}")
    lines += ["", "Each command is the repository's script of the same name (export: tools/export_model.py, serve: "
                  "deploy/serve.py)",
              "with the same options. Those taking -c CONFIG need a config file: yours, or one of the repository's "
              "configs/."]
    return "\n".join(lines)


def resolve(name):
    """The command `name` stands for (aliases; '-' for '_'), or None."""
    key = name.replace("-", "_")
    key = ALIASES.get(key, key)
    return key if key in COMMANDS else None


def run(name, args):
    """Run command `name` with `args` as its tool would; returns an exit status (or raises SystemExit)."""
    module, script, _ = COMMANDS[name]
    argv0 = sys.argv[0] if sys.argv else None
    sys.argv[:1] = [f"ppshitu {name}"]  # argparse's prog: "usage: ppshitu build_gallery ..."
    try:
        if module is not None:
            import importlib

            importlib.import_module(f"{__package__}.commands.{module}").cli(list(args))
            return 0
        path = os.path.join(CHECKOUT, script)
        if not os.path.isfile(path):
            print(f"error: ppshitu {name} runs {script} of a checkout of the repository, and this installation has "
                  f"none (git clone the repository, then `make demo` there)", file=sys.stderr)
            return 2
        import runpy

        saved = sys.argv[1:]
        sys.argv[1:] = list(args)
        try:
            runpy.run_path(path, run_name="__main__")
        finally:
            sys.argv[1:] = saved
        return 0
    finally:
        if argv0 is not None:
            sys.argv[0] = argv0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"ppshitu {__version__}")
        return 0
    if argv[0] == "help":
        if len(argv) == 1:
            print(usage())
            return 0
        argv = [argv[1], "--help"]
    name = resolve(argv[0])
    if name is None:
        close = difflib.get_close_matches(argv[0].replace("-", "_"), [*COMMANDS, *ALIASES], n=1)
        print(f"error: unknown command {argv[0]!r}" + (f" (did you mean {close[0]}?)" if close else "")
              + "; ppshitu --help lists them", file=sys.stderr)
        return 2
    return run(name, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
