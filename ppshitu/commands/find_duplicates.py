"""Find exact and near-duplicate images in a folder or a gallery, and report them as JSON and HTML
(with thumbnails). Nothing is moved unless --move-to is given, and never the copy kept per group.

    python tools/find_duplicates.py -c configs/inference/inference_general.yaml --dir ~/Photos \
        [--index output/photos_index] [--threshold T] [--k 10] [--out report_dir] \
        [--keep largest|first|oldest] [--move-to ~/Photos-duplicates]
    python tools/find_duplicates.py -c ... --index output/photos_index       # a gallery as it is
    python tools/find_duplicates.py -c ... -o IndexProcess.backend=milvus -o IndexProcess.uri=photos.db

--dir indexes the folder first (incrementally into --index when given, else into a temporary
gallery). The default rule is the model's calibrated near-duplicate rule
(ppshitu/library/calibration.json, made by python -m ppshitu.library.calibrate): images are
linked when their cosine reaches one threshold, or a lower one and their pHashes agree.
"""
import os
import shutil
import tempfile

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import finite_float, int_range, ranged

# the numeric flags' ranges (utils/argtypes.py: a value outside, NaN or an infinity is refused as parsed)
K, COSINE = int_range(1, 1000, "neighbours"), finite_float(0, 1, low_open=True, what="cosine")
PRECISION, WORKERS = finite_float(0.5, 1, high_open=True, what="a precision"), int_range(1, 1024, "threads")


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--dir", help="a folder of images (indexed first)")
    p.add_argument("--index", help="the gallery: with --dir, kept in sync with it (else a temporary one); "
                   "alone, searched as it is (default: the config's IndexProcess.index_dir, or for another "
                   "backend its uri/collection)")
    p.add_argument("--state", help="the folder-state file (default: INDEX/folder_state.sqlite)")
    p.add_argument("--threshold", type=COSINE, help="link images by this embedding cosine alone (default: the "
                   "model's calibrated rule: embedding + pHash)")
    p.add_argument("--no-phash", action="store_true", help="the calibrated embedding-only threshold, no pHash check")
    p.add_argument("--calibration", help="calibration file (default: ppshitu/library/calibration.json)")
    p.add_argument("--k", type=K, default=10, help="nearest neighbours searched per image (default 10)")
    p.add_argument("--keep", default="largest", choices=("largest", "first", "oldest"),
                   help="which copy of a group is kept: the largest file (default), the first path, the oldest")
    p.add_argument("--out", help="report folder (default: Global.output_dir/duplicates)")
    p.add_argument("--move-to", help="MOVE every duplicate except the kept copy of its group into this folder "
                   "(relative paths kept; nothing is deleted, nothing overwritten)")
    p.add_argument("--detect", action="store_true", help="compare main objects (detector) instead of whole images")
    p.add_argument("--allow-mass-removal", action="store_true", help="with --dir and --index: let the sync remove "
                   "more than half of the gallery, or all of it (see tools/index_folder.py)")
    p.add_argument("--root", help="folder a gallery's relative paths are under (--index alone; default: the "
                   "indexed folder, else IndexProcess.image_root)")
    return ranged(p)


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.errors import ConfigError
    from ppshitu.library import common
    from ppshitu.library.duplicates import find_duplicates, gallery_items, move_duplicates
    from ppshitu.library.folder import read_state, refuse_inside, sync_folder
    from ppshitu.library.report import check_report, write_report
    from ppshitu.library.duplicates import NearRule
    from ppshitu.library.similarity import near_duplicate_rule
    from ppshitu.utils.text import printable

    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    common.setup_tool(cfg, index=args.index, detect=args.detect)
    if not args.dir and not common.gallery_exists(cfg.IndexProcess):
        raise ConfigError(f"no gallery at {common.location(cfg.IndexProcess)}: give --dir DIR (a folder) or "
                          f"--index INDEX_DIR (a gallery)")
    rec, det = common.predictors(cfg, detect=args.detect or None, rec=rec, det=det)
    fingerprint = common.model_id(rec)
    if args.threshold is not None:
        rule = NearRule(float(args.threshold), source="--threshold")
    else:
        rule = near_duplicate_rule(fingerprint, args.calibration, use_phash=not args.no_phash)
        if rule is None:
            raise ConfigError(f"no calibrated near-duplicate threshold for model {fingerprint}: give --threshold, "
                              f"or measure one with python -m ppshitu.library.calibrate -c CONFIG")
    ip = cfg.IndexProcess
    out = args.out or os.path.join(cfg.Global.output_dir, "duplicates")
    refuse_inside(out, args.dir, "--out" if args.out else "the report folder (Global.output_dir/duplicates)")
    check_report(None, out)  # a report folder in the way fails now, not after the indexing
    tmp = None
    try:
        if args.dir and not args.index:
            tmp = tempfile.mkdtemp(prefix="ppshitu-dups-")
            ip["backend"], ip["index_dir"] = "faiss", os.path.join(tmp, "index")
        if args.dir:
            sync = sync_folder(cfg, args.dir, rec=rec, det=det, state_file=args.state,
                               allow_mass_removal=args.allow_mass_removal)
            print(" ".join(f"{k}={v}" for k, v in sync.summary().items()))
        gallery = common.open_store(ip, rec, fingerprint)
        state = read_state(ip, args.state)
        root = args.root or common.image_root(ip, state)
        items, vectors = gallery_items(cfg, gallery, state, root, rec=rec)
        report = find_duplicates(items, vectors, gallery, rule, args.k, args.keep)
        report.update(model_fingerprint=fingerprint, folder=root,
                      index=None if tmp else common.location(ip))
        check_report(report, out)  # before anything is moved
        moves = None
        if args.move_to:
            moves = move_duplicates(report, args.move_to, library_root=root if (args.dir or state) else None)
            if args.dir and not tmp and moves:
                # drop the moved files (this run moved them: however many, they are meant to go)
                sync_folder(cfg, args.dir, rec=rec, det=det, state_file=args.state, allow_mass_removal=True)
        json_path, html_path = write_report(report, out, moves)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    for i, g in enumerate(report["groups"], 1):
        print(f"group {i} ({g['kind']}, {len(g['members'])}): keep {printable(g['keep'])}")
        for m in g["members"]:
            if not m["keep"]:
                print(f"    {'same bytes' if m['same_bytes_as_keep'] else 'cos %.3f' % m['cosine_to_keep']}"
                      f"\t{printable(m['path'])}")
    if moves:
        print(f"moved {len(moves)} files into {args.move_to}")
    print(f"images={report['items']} groups={len(report['groups'])} exact={report['exact_groups']} "
          f"near={report['near_groups']} duplicates={report['duplicates']}")
    print(f"near-duplicate rule: {rule.describe()} ({rule.source})")
    print(f"report: {html_path} {json_path}")
    return report


def cli(argv=None):
    """`ppshitu find_duplicates ARGS`, as `python tools/find_duplicates.py ARGS` runs: an expected error is one line,
    exit status 2."""
    run_main(lambda: main(argv))
