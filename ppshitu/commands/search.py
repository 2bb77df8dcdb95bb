"""Search a gallery by image: print the nearest gallery images with their scores and write a contact
sheet (the query and its results, each captioned with label and score).

    python tools/search.py -c configs/inference/inference_general.yaml --index output/photos_index \
        --image query.jpg [--k 10] [--out sheet.jpg] [--detect] [--json]

Scores are cosine similarities for IP galleries (higher is closer), squared distances for L2 ones.
"""
import json
import os

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import int_range, ranged

MAX_K = 1000  # results: a contact sheet of 1000 tiles is 200 rows, ~43000 px tall (JPEG's limit is 65535)


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="the query image")
    p.add_argument("--k", type=int_range(1, MAX_K, "results"), default=10,
                   help=f"how many results, 1 to {MAX_K} (default 10; at most the gallery's items)")
    p.add_argument("--index", help="the gallery (default: IndexProcess.index_dir)")
    p.add_argument("--out", help="the contact sheet to write (default: Global.output_dir/search_<query>.jpg)")
    p.add_argument("--no-sheet", action="store_true", help="print only")
    p.add_argument("--detect", action="store_true", help="search with the query's main object (detector)")
    p.add_argument("--root", help="folder the gallery's relative paths are under (default: the folder "
                   "index_folder indexed, else IndexProcess.image_root)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return ranged(p)


def main(argv=None, rec=None, det=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    apply_threads(cfg)
    from ppshitu.errors import ConfigError
    from ppshitu.library import common
    from ppshitu.library.folder import read_state
    from ppshitu.library.search import hits_sheet, search_image
    from ppshitu.utils.outputs import OutputGuard
    from ppshitu.utils.text import printable
    from ppshitu.visualize import save_image

    common.setup_tool(cfg, index=args.index)
    rec, det = common.predictors(cfg, detect=args.detect, rec=rec, det=det)
    ip = cfg.IndexProcess
    gallery = common.open_store(ip, rec)
    root = args.root or common.image_root(ip, read_state(ip))
    sheet_path = guard = None
    if not args.no_sheet:
        sheet_path = args.out or os.path.join(cfg.Global.output_dir,
                                              f"search_{os.path.splitext(os.path.basename(args.image))[0]}.jpg")
        if os.path.exists(sheet_path) and os.path.samefile(sheet_path, args.image):
            raise ConfigError(f"--out {sheet_path} is the query image; choose another file")
        # never over a file ppshitu did not write (a re-run replaces its own sheet); refused before the search
        guard = OutputGuard(os.path.dirname(os.path.abspath(sheet_path)),
                            "--out" if args.out else "Global.output_dir", inputs=[args.image])
        guard.check(sheet_path)
    hits, box, rgb = search_image(cfg, rec, gallery, args.image, args.k, det=det, root=root)
    if guard is not None:
        kind = "cosine" if gallery.higher_is_better else "squared L2 distance"
        with guard:
            save_image(sheet_path, hits_sheet(cfg, rgb, hits, query_box=box,
                                              title=f"{os.path.basename(args.image)}: {len(hits)} nearest ({kind})"),
                       guard=guard)
    if args.json:
        print(json.dumps({"query": args.image, "box": box, "results": hits, "sheet": sheet_path}, indent=1))
    else:
        if box is not None:
            print(f"main object: {[round(v, 1) for v in box]}")
        for h in hits:
            print(f"{h['rank']:3d}  {h['score']:.4f}  {printable(h['label'])}\t{printable(h['file'])}")
        if sheet_path:
            print(f"contact sheet: {sheet_path}")
    return hits


def cli(argv=None):
    """`ppshitu search ARGS`, as `python tools/search.py ARGS` runs: an expected error is one line, exit status 2."""
    run_main(lambda: main(argv))
