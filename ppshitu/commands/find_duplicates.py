"""Find duplicate images in a folder or a gallery -- candidates by embedding, decisions by verification,
the rule calibrated on the folder itself -- and write a review page (duplicates.html) and JSON.
Nothing is moved unless asked, never the last copy of a group, nothing is ever deleted.

    python tools/find_duplicates.py -c configs/inference/inference_general.yaml --dir ~/Photos \
        [--index output/photos_index] [--precision 0.95] [--k 10] [--out report_dir] \
        [--keep best|largest|first|oldest] [--move-to ~/Photos-duplicates]
    python tools/find_duplicates.py -c ... --index output/photos_index       # a gallery as it is
    python tools/find_duplicates.py --apply report_dir/decisions.json --move-to ~/Photos-duplicates

--dir indexes the folder first (incrementally into --index when given, else into a temporary
gallery). Each image's k nearest neighbours by embedding are candidates; each candidate pair is
verified (local features + RANSAC, then the aligned images compared tile by tile after a global
gain/offset: ppshitu/library/verify.py) and called a duplicate ("the same picture, edited": may be
moved) or similar ("the same scene or object": shown, never moved by default). The rule is
calibrated on the folder at run time (edited copies of a sample of its images, made in memory, vs
its images' nearest neighbours and locally changed copies: ppshitu/library/dupcalibrate.py), to
reach --precision at the best recall; it prints what it measured and is cached per folder and
model. Groups are complete-linkage: never chained through a weak link.

The review page (duplicates.html) suggests a keeper per group (highest resolution, then largest file,
then most EXIF fields), lets you tick keep / move per image or per group, and exports
decisions.json; --apply carries it out (refused as a whole when any of its files changed since the
report). --move-to without --apply moves every duplicate but its group's suggested keeper.
"""
import os
import shutil
import sys
import tempfile
import time

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import finite_float, int_range, ranged

# the numeric flags' ranges (utils/argtypes.py: a value outside, NaN or an infinity is refused as parsed)
K, COSINE = int_range(1, 1000, "neighbours"), finite_float(0, 1, low_open=True, what="cosine")
PRECISION, WORKERS = finite_float(0.5, 1, high_open=True, what="a precision"), int_range(1, 1024, "threads")


def parser():
    p = config_parser(__doc__.splitlines()[0])
    for a in p._actions:   # --apply needs no config
        if a.dest == "config":
            a.required = False
    p.add_argument("--dir", help="a folder of images (indexed first)")
    p.add_argument("--index", help="the gallery: with --dir, kept in sync with it (else a temporary one); "
                   "alone, searched as it is (default: the config's IndexProcess.index_dir, or for another "
                   "backend its uri/collection)")
    p.add_argument("--state", help="the folder-state file (default: INDEX/folder_state.sqlite)")
    p.add_argument("--precision", type=PRECISION, default=0.95, help="the precision the calibrated rule must reach "
                   "on the folder's calibration pairs (default 0.95); the rule with the best recall at it is used")
    p.add_argument("--recalibrate", action="store_true", help="measure the rule again (ignore the cached one)")
    p.add_argument("--default-rule", action="store_true", help="no calibration: the documented default rule")
    p.add_argument("--threshold", type=COSINE, help="link images by this embedding cosine alone, unverified "
                   "(for comparison; not what a library should trust)")
    p.add_argument("--k", type=K, default=10, help="nearest neighbours searched per image (default 10)")
    p.add_argument("--workers", type=WORKERS, default=2, help="threads verifying pairs (default 2)")
    p.add_argument("--keep", default="best", choices=("best", "largest", "first", "oldest"),
                   help="the suggested keeper of a group: best (highest resolution, then largest file, then most "
                   "EXIF fields; default), largest file, first path, oldest")
    p.add_argument("--out", help="report folder (default: Global.output_dir/duplicates)")
    p.add_argument("--move-to", help="MOVE files into this folder (relative paths kept; nothing deleted, nothing "
                   "overwritten): with --apply, those the decisions file marks 'move'; alone, every duplicate but "
                   "its group's suggested keeper (similar groups are never moved this way)")
    p.add_argument("--apply", metavar="DECISIONS", help="a decisions.json exported from duplicates.html: move the "
                   "images it marks 'move' into --move-to (refused, nothing moved, if any of its files changed "
                   "since the report or a group would keep nothing)")
    p.add_argument("--detect", action="store_true", help="embed main objects (detector) instead of whole images "
                   "(verification always compares the whole images)")
    p.add_argument("--allow-mass-removal", action="store_true", help="with --dir and --index: let the sync remove "
                   "more than half of the gallery, or all of it (see tools/index_folder.py)")
    p.add_argument("--root", help="folder a gallery's relative paths are under (--index alone; default: the "
                   "indexed folder, else IndexProcess.image_root)")
    return ranged(p)


def apply_main(args):
    from ppshitu.errors import ConfigError
    from ppshitu.library.duplicates import apply_decisions, load_decisions
    from ppshitu.utils.outputs import OutputGuard
    from ppshitu.utils.text import printable

    if not args.move_to:
        raise ConfigError("--apply needs --move-to DIR (where the images marked 'move' go; nothing is deleted)")
    data = load_decisions(args.apply)
    moves = apply_decisions(data, args.move_to, library_root=args.dir or data.get("folder"), where=args.apply)
    for m in moves:
        print(f"moved\t{printable(m['from'])}\t{printable(m['to'])}")
    log_path = None
    if args.out:   # (a log only where asked: the decisions file may sit in a Downloads folder)
        with OutputGuard(args.out, "--out", inputs=[args.apply]) as guard:
            log_path = guard.write_json(os.path.join(args.out, "applied.json"),
                                        {"decisions": os.path.abspath(args.apply), "moves": moves}, indent=1)
    print(f"moved {len(moves)} files into {args.move_to} (nothing deleted)"
          f"{'; log: ' + log_path if log_path else ''}")
    if moves:
        print("index the folder again (tools/index_folder.py) to drop the moved files from its gallery")
    return {"moves": moves}


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    if args.apply:
        return apply_main(args)
    from ppshitu.errors import ConfigError

    if not args.config:
        raise ConfigError("-c CONFIG is required (except with --apply)")
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.library import common, dupcalibrate
    from ppshitu.library.duplicates import FeatureCache, find_duplicates, gallery_items, move_duplicates
    from ppshitu.library.folder import read_state, refuse_inside, sync_folder
    from ppshitu.library.report import check_report, write_report

    common.setup_tool(cfg, index=args.index, detect=args.detect)
    if not args.dir and not common.gallery_exists(cfg.IndexProcess):
        raise ConfigError(f"no gallery at {common.location(cfg.IndexProcess)}: give --dir DIR (a folder) or "
                          f"--index INDEX_DIR (a gallery)")
    rec, det = common.predictors(cfg, detect=args.detect or None, rec=rec, det=det)
    fingerprint = common.model_id(rec)
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
        features = FeatureCache(items, cfg.Global.get("max_image_pixels"))
        rule = floor = cal = None
        if args.threshold is None:
            cal = _calibration(args, root or common.location(ip), fingerprint, items, vectors, gallery, rec, features)
            rule, floor = dupcalibrate.rule_of(cal)
        report = find_duplicates(items, vectors, gallery, rule, floor, args.k, args.keep, features=features,
                                 workers=args.workers, threshold=args.threshold, calibration=cal)
        report.update(model_fingerprint=fingerprint, folder=root, index=None if tmp else common.location(ip))
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
    _print_report(report, moves, args.move_to, html_path, json_path)
    sys.stdout.flush()
    return report


def _calibration(args, where, fingerprint, items, vectors, gallery, rec, features):
    """The folder's duplicate rule: the documented default (--default-rule), the cached calibration of this
    folder and model, or a new one (measured, printed and cached)."""
    from ppshitu.library import dupcalibrate

    if args.default_rule:
        return dupcalibrate._fallback({"format": dupcalibrate.FORMAT, "images": len(items)}, "--default-rule",
                                      print, time.time())
    cal = None if args.recalibrate else dupcalibrate.cached(where, fingerprint, args.precision, len(items))
    if cal is not None:
        print(f"calibration: cached for this folder and model ({cal['cached']}, {cal.get('date')}, "
              f"{cal.get('images')} images): {cal['rule']['text']}"
              f"{'; ' + cal['fallback'] if cal.get('fallback') else ''}; candidates from cosine >= "
              f"{cal['floor']} (--recalibrate measures again)")
        return cal
    cal = dupcalibrate.calibrate_folder(items, vectors, gallery, rec, features, args.precision, workers=args.workers)
    dupcalibrate.store(cal, where, fingerprint, args.precision)
    return cal


def _print_report(report, moves, move_to, html_path, json_path):
    """One line a group, one a member (tab-separated, names printable), then the totals and the rule."""
    from ppshitu.utils.text import printable

    for g in report["groups"]:
        print(f"group {g['id']} ({g['tier']}, {g['kind']}, {len(g['members'])}): keep {printable(g['keep'])}")
        for m in g["members"]:
            if m["path"] == g["keep"]:
                continue
            e = m.get("evidence_to_keep") or {}
            what = "same bytes" if m["same_bytes_as_keep"] else \
                (f"{m.get('verdict_to_keep')}: inliers {e.get('inliers')}, worst tile {e.get('local')}, cos "
                 f"{m['cosine_to_keep']:.3f}" if e else f"cos {m['cosine_to_keep']:.3f}")
            print(f"    {m['action']}\t{what}\t{printable(m['path'])}")
    if moves:
        print(f"moved {len(moves)} files into {move_to}")
    s = report["seconds"]
    print(f"images={report['items']} duplicate_groups={report['exact_groups'] + report['near_groups']} "
          f"exact={report['exact_groups']} near={report['near_groups']} duplicates={report['duplicates']} "
          f"similar_groups={report['similar_groups']} candidates={report['candidates']} "
          f"verified={report['verified_pairs']} seconds={s['total']}")
    print(f"duplicate rule: {report['rule']['text']} ({report['rule'].get('source', '')})")
    print(f"report: {html_path} {json_path}")


def cli(argv=None):
    """`ppshitu find_duplicates ARGS`, as `python tools/find_duplicates.py ARGS` runs: an expected error is one line,
    exit status 2."""
    run_main(lambda: main(argv))
