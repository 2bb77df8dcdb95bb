"""Index a folder of images into a gallery, incrementally: a second run adds new files, re-embeds
changed ones and removes deleted ones, touching nothing else.

    python tools/index_folder.py -c configs/inference/inference_general.yaml --dir ~/Photos \
        --index output/photos_index [--detect] [--rebuild]

Labels: the sub-folder a file is in (relative to --dir), or the file's name without extension for
files in --dir itself. The folder state lives in INDEX/folder_state.sqlite (see
ppshitu/library/folder.py for how it stays consistent with the gallery).

A run that would remove more than half of the gallery, or all of it (an unmounted drive, a moved
folder: its files look deleted), changes nothing and exits 2 naming what would go, unless
--allow-mass-removal. Output: one line per file with --list (`added|changed|removed|skipped<TAB>path`,
a name with a newline or tab shown quoted and escaped), then the counts.
"""
import sys

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import ranged


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="the folder of images (searched recursively)")
    p.add_argument("--index", help="the gallery (default: IndexProcess.index_dir)")
    p.add_argument("--state", help="the folder-state SQLite file (default: INDEX/folder_state.sqlite)")
    p.add_argument("--detect", action="store_true", help="embed each image's main object (the detector's best "
                   "box) instead of the whole image; same as -o IndexProcess.use_det=True")
    p.add_argument("--rebuild", action="store_true", help="embed the whole folder again into a new gallery "
                   "(e.g. after changing the model)")
    p.add_argument("--allow-mass-removal", action="store_true", help="let this run remove more than half of the "
                   "gallery, or all of it, when those files are really gone from --dir (refused otherwise: a "
                   "vanished folder, e.g. an unmounted drive, looks like every file deleted)")
    p.add_argument("--list", action="store_true", help="print every added, changed, removed and skipped file")
    return ranged(p)  # (no numeric flag yet: one added gets its range checked)


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.library.common import setup_tool
    from ppshitu.library.folder import sync_folder
    from ppshitu.utils.text import printable

    setup_tool(cfg, index=args.index, detect=args.detect)
    report = sync_folder(cfg, args.dir, rec=rec, det=det, state_file=args.state, rebuild=args.rebuild,
                         allow_mass_removal=args.allow_mass_removal, log_unreadable=False)  # (listed below)
    if args.list:
        for what in ("added", "changed", "removed"):
            for rel in getattr(report, what):
                print(f"{what}\t{printable(rel)}")
        for rel, why in report.skipped:
            print(f"skipped\t{printable(rel)}\t{why}")
    for rel, why in report.unreadable:
        print(f"unreadable\t{printable(rel)}\t{why}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in report.summary().items()))
    return report


def cli(argv=None):
    """`ppshitu index_folder ARGS`, as `python tools/index_folder.py ARGS` runs: an expected error is one line, exit
    status 2."""
    run_main(lambda: main(argv))
