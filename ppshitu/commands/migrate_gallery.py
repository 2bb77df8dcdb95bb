"""Copy a gallery between backends (FAISS directory <-> Milvus URI) with labels, paths, boxes and fingerprint.

    python tools/migrate_gallery.py galleries/shop gallery.db#shop                 # FAISS -> Milvus Lite
    python tools/migrate_gallery.py galleries/shop http://milvus:19530 --collection shop
    python tools/migrate_gallery.py gallery.db#shop galleries/shop_copy            # Milvus -> FAISS
    python tools/migrate_gallery.py galleries/ivfpq gallery.db#shop --index-method HNSW32

A Milvus side is a `*.db` file (Milvus Lite) or http(s)://host:port, with the collection after '#'
or given by --collection / --src-collection; the token comes from $PPSHITU_MILVUS_TOKEN. The copy
is verified: counts, per-label counts, fingerprint, and the same top-1 label for a sample of the
stored vectors searched in both galleries (exit status 2 and a message when they differ).
"""
import argparse

from ppshitu.cli import run_main
from ppshitu.gallery.indexes import INDEX_METHODS
from ppshitu.gallery.migrate_backends import migrate
from ppshitu.utils.argtypes import int_range, ranged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="the gallery to copy: a FAISS directory or a Milvus URI[#collection]")
    parser.add_argument("dst", help="where to write it: a FAISS directory or a Milvus URI[#collection]")
    parser.add_argument("--collection", default=None, help="the destination's Milvus collection")
    parser.add_argument("--src-collection", default=None, help="the source's Milvus collection")
    parser.add_argument("--index-method", choices=INDEX_METHODS.names(), default=None,
                        help="index type of the copy (default: the source's)")
    parser.add_argument("--overwrite", action="store_true", help="replace a gallery already at DST (atomically)")
    parser.add_argument("--sample", type=int_range(1, 10 ** 9, "vectors"), default=200,
                        help="stored vectors searched in both to verify (at least 1)")
    args = ranged(parser).parse_args(argv)  # a range error before anything is written
    summary = migrate(args.src, args.dst, src_collection=args.src_collection, dst_collection=args.collection,
                      index_method=args.index_method, overwrite=args.overwrite, sample=args.sample)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


def cli(argv=None):
    """`ppshitu migrate_gallery ARGS`, as `python tools/migrate_gallery.py ARGS` runs: an expected error is one line,
    exit status 2."""
    run_main(lambda: main(argv))
