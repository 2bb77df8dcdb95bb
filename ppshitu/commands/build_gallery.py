"""Build, append to, remove from or compact a gallery (PP-ShiTu's IndexProcess keys).

    python tools/build_gallery.py -c configs/inference/build_gallery.yaml \
        [-o IndexProcess.index_operation=append] [-o IndexProcess.data_file=more.txt]
    # N processes, on any machines, each embedding its share of the data file into one Milvus collection:
    python tools/build_gallery.py -c ... -o IndexProcess.backend=milvus -o IndexProcess.uri=http://milvus:19530 \
        -o IndexProcess.collection=shop -o IndexProcess.index_operation=append --shard 0/4     # ... 3/4
"""
import logging

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA


def main(argv=None):
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="embed only share I of N of the data file (by a stable hash of each path); with "
                             "index_operation append, N processes fill one gallery (the first creates it)")
    args = parser.parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import faiss

    from ppshitu.gallery.builder import build_gallery
    from ppshitu.utils.image import set_max_image_pixels

    set_max_image_pixels(cfg.Global.max_image_pixels)
    faiss.omp_set_num_threads(cfg.Global.cpu_num_threads)
    summary = build_gallery(cfg, shard=args.shard)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


def cli(argv=None):
    """`ppshitu build_gallery ARGS`, as `python tools/build_gallery.py ARGS` runs: an expected error is one line, exit
    status 2."""
    run_main(lambda: main(argv))
