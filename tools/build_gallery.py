"""Build, append to, remove from or compact a gallery (PP-ShiTu's IndexProcess keys).

    python tools/build_gallery.py -c configs/inference/build_gallery.yaml \
        [-o IndexProcess.index_operation=append] [-o IndexProcess.data_file=more.txt]
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.cli import config_parser, load_cli_config, run_main  # noqa: E402
from ppshitu.schemas import INFER_SCHEMA  # noqa: E402


def main(argv=None):
    args = config_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import faiss

    from ppshitu.gallery.builder import build_gallery
    from ppshitu.utils.image import set_max_image_pixels

    set_max_image_pixels(cfg.Global.max_image_pixels)
    faiss.omp_set_num_threads(cfg.Global.cpu_num_threads)
    summary = build_gallery(cfg)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


if __name__ == "__main__":
    run_main(main)
