"""Check a gallery's labels: per-label recall, confused label pairs, suspected mislabels, the same image under
two labels, outliers and single-image labels, as JSON and HTML (with thumbnails).

    python tools/gallery_doctor.py -c configs/inference/inference_general.yaml \
        -o IndexProcess.index_dir=gallery/index [--root IMAGE_ROOT] [--k 3] [--out DIR]

Uses the stored vectors (no model runs; ppshitu/gallery/doctor.py says what each finding means); the images
are read only for thumbnails and to tell "same file" from "same vector", from --root (default
IndexProcess.image_root). Writes DIR/doctor.json and DIR/doctor.html (+ DIR/thumbs/), DIR defaulting to
Global.output_dir/doctor. Changes nothing in the gallery.
"""
import os

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.utils.argtypes import finite_float, int_range, ranged


def parser():
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--index", help="the gallery directory (default: IndexProcess.index_dir; another backend: its uri)")
    p.add_argument("--root", help="folder the gallery's relative paths are under (default: IndexProcess.image_root)")
    z = finite_float(0, 1000, low_open=True, what="a robust z")
    p.add_argument("--k", type=int_range(1, 1000, "neighbours"), default=3,
                   help="neighbours that must all carry another label for a suspected mislabel (default 3)")
    p.add_argument("--mislabel-position", type=finite_float(0, 1, low_open=True, what="a position"), default=0.6,
                   help="an item whose neighbours all carry another label is a suspected mislabel when its own "
                   "label's centroid lies under this position between a typical unrelated label (0) and the "
                   "nearest other label (1) (default 0.6)")
    p.add_argument("--outlier-z", type=z, default=3.0, help="robust z below which an item is an outlier of its "
                   "label (default 3)")
    p.add_argument("--out", help="report folder (default: Global.output_dir/doctor)")
    p.add_argument("--no-hash", action="store_true", help="do not read image files to compare their bytes")
    return ranged(p)


def main(argv=None):
    args = parser().parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    from ppshitu.gallery.base import open_gallery
    from ppshitu.gallery.doctor import diagnose, report_paths, write_report
    from ppshitu.gallery.neighbours import gallery_arrays
    from ppshitu.gallery.search_tuning import describe
    from ppshitu.utils.outputs import OutputGuard
    from ppshitu.utils.text import printable

    if args.root is not None and not os.path.isdir(args.root):
        what = "does not exist" if not os.path.lexists(args.root) else "is not a directory"
        raise ConfigError(f"--root {printable(args.root)} {what}: give the folder the gallery's image paths are under")
    ip = cfg.IndexProcess
    if args.index:
        ip["index_dir"] = args.index
    out = args.out or os.path.join(cfg.Global.output_dir, "doctor")
    guard = OutputGuard(out, "--out" if args.out else "Global.output_dir")
    guard.check_all(report_paths(out))  # before any work
    root = args.root or ip.get("image_root")
    gallery = open_gallery(ip)
    try:
        items = gallery_arrays(gallery)
        report = diagnose(items, gallery.higher_is_better, k=args.k, mislabel_position=args.mislabel_position,
                          outlier_z=args.outlier_z, root=root, hash_files=not args.no_hash)
        report.update(gallery=str(getattr(gallery, "index_dir", "")), version=getattr(gallery, "version", None),
                      dist_type=gallery.manifest.get("dist_type"), root=root,
                      index_method=gallery.manifest.get("index_method"), search=describe(gallery.search_setting()))
    finally:
        gallery.close()
    with guard:
        json_path, html_path = write_report(report, out, guard)
    s = report.get("summary", {})
    print(f"index={report['index_method']} search: {report['search']}")
    print(f"items={report['items']} labels={report['labels']} loo_recall_at_1={s.get('loo_recall_at_1')} "
          f"suspected_mislabels={s.get('suspected_mislabels', 0)} same_image_two_labels="
          f"{s.get('same_image_two_labels', 0)} outliers={s.get('outliers', 0)} "
          f"single_image_labels={s.get('single_image_labels', len(report['single_image_labels']))}")
    for m in report["suspected_mislabels"][:20]:
        print(f"mislabel?  {printable(str(m['path']))}: labelled {printable(m['label'])}, its neighbours are "
              f"{printable(m['suggested'])} (position {m['position']})")
    for d in report["same_image_two_labels"][:20]:
        a, b = d["items"]
        print(f"two labels ({d['kind']}): {printable(str(a['path']))} [{printable(a['label'])}] = "
              f"{printable(str(b['path']))} [{printable(b['label'])}]")
    for p in report["confused_pairs"][:5]:
        print(f"confused:  {printable(p['labels'][0])} / {printable(p['labels'][1])}: {p['count']}")
    print(f"report: {html_path} {json_path}")
    return report


def cli(argv=None):
    """`ppshitu gallery_doctor ARGS`, as `python tools/gallery_doctor.py ARGS` runs: an expected error is one line,
    exit status 2."""
    run_main(lambda: main(argv))
