"""Import a PP-ShiTu index directory (vector.index + id_map.pkl) as a ppshitu gallery.

    python tools/convert_ppshitu_index.py PPSHITU_INDEX_DIR OUT_DIR [--delimiter '\t']

id_map.pkl is read with an unpickler that builds only dicts, ints and strings.
"""
import argparse

from ppshitu.cli import run_main
from ppshitu.errors import ConfigError
from ppshitu.gallery.indexes import INDEX_METHODS
from ppshitu.gallery.migrate import convert_ppshitu_index


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="PP-ShiTu index_dir (vector.index, id_map.pkl)")
    parser.add_argument("out", help="gallery directory to write")
    parser.add_argument("--delimiter", default="\t",
                        help="what separated image path and label in the data file (default: tab)")
    parser.add_argument("--index-method", choices=INDEX_METHODS.names(), default=None,
                        help="index type of the new gallery (default: the same as the source)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing gallery at OUT")
    args = parser.parse_args(argv)
    try:
        delimiter = args.delimiter.encode().decode("unicode_escape")  # so '\t' can be typed on a shell
    except UnicodeDecodeError as e:
        raise ConfigError(f"--delimiter {args.delimiter!r}: not a valid escape ({e.reason})") from None
    if not delimiter or "\n" in delimiter or "\r" in delimiter:
        raise ConfigError(f"--delimiter {args.delimiter!r}: must be a non-empty string within one line "
                          f"(what separated image path and label, e.g. '\\t' or ' ')")
    g = convert_ppshitu_index(args.src, args.out, delimiter, args.index_method, args.overwrite)
    print(f"imported {len(g)} vectors, {len(g.labels())} labels ({g.manifest['index_method']}, "
          f"{g.manifest['dist_type']}, {g.embedding_size}-d) into {args.out}; model fingerprint unknown: "
          f"query it with the model that built the PP-ShiTu index")


def cli(argv=None):
    """`ppshitu convert_ppshitu_index ARGS`, as `python tools/convert_ppshitu_index.py ARGS` runs: an expected error is
    one line, exit status 2."""
    run_main(lambda: main(argv))
