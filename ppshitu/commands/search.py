"""Search a gallery by image or by text: print the nearest gallery images with their scores and write a contact
sheet (the query and its results, each captioned with label and score).

    python tools/search.py -c configs/inference/inference_general.yaml --index output/photos_index \
        --image query.jpg [--k 10] [--out sheet.jpg] [--detect] [--json]
    python tools/search.py -c CONFIG --index output/photos_index --text "a red car"

Scores are cosine similarities for IP galleries (higher is closer), squared distances for L2 ones. A text query
needs a gallery indexed with a text-image model's image encoder (tools/import_model.py --text-encoder) and that
model in the config (Global.rec_inference_model_dir); a query longer than the model's context length is cut
to it, and said.
"""
import json
import os

from ppshitu.cli import apply_threads, config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import int_range, ranged

MAX_K = 1000  # results: a contact sheet of 1000 tiles is 200 rows, ~43000 px tall (JPEG's limit is 65535)


def parser():
    p = config_parser(__doc__.splitlines()[0])
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="the query image")
    query.add_argument("--text", help="the query sentence (a text-image model's gallery): \"a red car\", \"红色的汽车\"")
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
    from ppshitu.library import common
    from ppshitu.library.folder import read_state

    common.setup_tool(cfg, index=args.index)
    if args.text is not None and args.detect:
        from ppshitu.errors import ConfigError

        raise ConfigError("--detect finds the main object of a query image; a --text query has none")
    rec, det = common.predictors(cfg, detect=args.detect, rec=rec, det=det)
    ip = cfg.IndexProcess
    if args.text is not None:
        from ppshitu.infer.text_tokenizer import TextQueryError

        if not args.text.strip():  # before any model or gallery loads
            raise TextQueryError(f"--text {args.text!r} is empty: give words to search for")
        from ppshitu.library.search import open_for_text
        gallery = open_for_text(ip, rec)
    else:
        gallery = common.open_store(ip, rec)
    root = args.root or common.image_root(ip, read_state(ip))
    sheet_path, guard = _sheet_target(args, cfg)
    hits, box, rgb, note = _search(args, cfg, rec, det, gallery, root)
    if guard is not None:
        _write_sheet(args, cfg, gallery, hits, box, rgb, sheet_path, guard)
    _report(args, hits, box, note, sheet_path)
    return hits


def _search(args, cfg, rec, det, gallery, root):
    """(hits, the query's box, the query tile's RGB, the truncation note or None)."""
    from ppshitu.library import search

    if args.text is None:
        hits, box, rgb = search.search_image(cfg, rec, gallery, args.image, args.k, det=det, root=root)
        return hits, box, rgb, None
    from ppshitu.infer.factory import text_predictor
    from ppshitu.library.sheet import text_card

    hits, info = search.search_text(text_predictor(cfg, rec), gallery, args.text, args.k, root=root)
    rgb = text_card(args.text, font_path=(cfg.get("Global") or {}).get("font_path"))
    return hits, None, rgb, search.truncation_note(info)


def _sheet_target(args, cfg):
    """(the contact sheet's path, its OutputGuard), checked before the search; (None, None) with --no-sheet."""
    from ppshitu.errors import ConfigError
    from ppshitu.utils.outputs import OutputGuard

    if args.no_sheet:
        return None, None
    name = os.path.splitext(os.path.basename(args.image))[0] if args.image is not None else _text_slug(args.text)
    sheet_path = args.out or os.path.join(cfg.Global.output_dir, f"search_{name}.jpg")
    if args.image is not None and os.path.exists(sheet_path) and os.path.samefile(sheet_path, args.image):
        raise ConfigError(f"--out {sheet_path} is the query image; choose another file")
    # never over a file ppshitu did not write (a re-run replaces its own sheet); refused before the search
    guard = OutputGuard(os.path.dirname(os.path.abspath(sheet_path)), "--out" if args.out else "Global.output_dir",
                        inputs=[args.image] if args.image is not None else [])
    guard.check(sheet_path)
    return sheet_path, guard


def _text_slug(text, most=40):
    """A file-name part of a text query: its letters and digits (any script), the rest '_'."""
    slug = "".join(c if c.isalnum() else "_" for c in text.strip())[:most].strip("_")
    return f"text_{slug or 'query'}"


def _write_sheet(args, cfg, gallery, hits, box, rgb, sheet_path, guard):
    from ppshitu.library.search import hits_sheet
    from ppshitu.visualize import save_image

    kind = "cosine" if gallery.higher_is_better else "squared L2 distance"
    query = os.path.basename(args.image) if args.image is not None else f"\"{args.text}\""
    with guard:
        save_image(sheet_path, hits_sheet(cfg, rgb, hits, query_box=box, title=f"{query}: {len(hits)} nearest ({kind})"),
                   guard=guard)


def _report(args, hits, box, note, sheet_path):
    from ppshitu.utils.text import printable

    if args.json:
        query = {"query": args.image} if args.image is not None else {"text": args.text, "truncated": bool(note)}
        print(json.dumps({**query, "box": box, "results": hits, "sheet": sheet_path, **({"note": note} if note else {})},
                         indent=1))
        return
    if note:
        print(f"note: {note}")
    if box is not None:
        print(f"main object: {[round(v, 1) for v in box]}")
    for h in hits:
        print(f"{h['rank']:3d}  {h['score']:.4f}  {printable(h['label'])}\t{printable(h['file'])}")
    if sheet_path:
        print(f"contact sheet: {sheet_path}")


def cli(argv=None):
    """`ppshitu search ARGS`, as `python tools/search.py ARGS` runs: an expected error is one line, exit status 2."""
    run_main(lambda: main(argv))
