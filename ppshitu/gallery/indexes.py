"""The index methods by `IndexProcess.index_method` name: one line each, naming the class that implements
it (an `index_methods.IndexMethod`: its FAISS index and its Milvus index), imported on first use. The
names are the config's choices (schemas.py) without importing faiss.

A new method: a class subclassing `IndexMethod` (in index_methods.py, or a module of its own that imports
index_methods, never this one) and its line here.
"""
from ..registry import Registry

INDEX_METHODS = Registry("index_method", {
    "Flat": "ppshitu.gallery.index_methods:FlatMethod",
    "HNSW32": "ppshitu.gallery.index_methods:HNSWMethod",
    "IVF": "ppshitu.gallery.index_methods:IVFMethod",
    "IVFPQ": "ppshitu.gallery.index_methods:IVFPQMethod",
    "IVFSQ8": "ppshitu.gallery.index_methods:IVFSQ8Method",
    "IVFPQFS": "ppshitu.gallery.index_methods:IVFPQFastScanMethod",
})
INDEX_METHODS.add("FLAT", "ppshitu.gallery.index_methods:FlatMethod", alias_of="Flat")  # PP-ShiTu spells it both ways

# `index_method: auto`: exact search (Flat) below FLAT_BELOW vectors, IVF (its 8-bit-list form IVFSQ8, whose
# candidates are re-scored exactly: IVF's answers from a quarter of the bytes) at its tuned nprobe and ~4 sqrt(N)
# lists (IVFMethod.lists_for) from there. IVF, not
# HNSW32: on realistic vectors (bench/realistic_vectors.py) HNSW32 needs ef_search 768 for recall@1 0.98 at 50k-100k
# and was then slower than Flat at 50k (bench/results/bench_search_tuned_100000_HNSW32.md: 34 vs 256 queries/s);
# at 100k tuned IVF answered 301 queries/s at recall@1 0.984 where tuned HNSW32 gave 44/s at 0.983
# (bench_search_tuned.md and _100000_HNSW32.md, 2 shared cores, load 16-27), IVF built in 158 s vs 288-522 s,
# and it removes items without tombstones. FLAT_BELOW: from 5,000 vectors tuned IVF beat Flat in every run
# (2.1-4.6x, bench_search_tuned_crossover_IVF.md); below it the runs disagree (0.5x-20x at 250-2,000: noise on a
# loaded machine), Flat answers thousands of queries/s there anyway, and it is exact.
# From LARGE_FROM vectors, where the store has it (FAISS; Milvus has no fast-scan index), IVFPQFS: 4-bit PQ lists
# scanned with SIMD, 256 candidates re-scored exactly, in a fifth of IVFSQ8's memory. On realistic vectors, each
# at its tuned setting for recall@1 0.98, wall clock on 2 cores (queries all in one call / 64 per call / one):
# 100k IVFSQ8 0.984 at 4,720 / 3,951 / 1,553 q/s, IVFPQFS 0.982 at 3,815 / 3,066 / 1,968 (its exact re-scoring
# of 256 candidates is most of its time there); 300k IVFSQ8 0.978 at 2,039 / 1,547 / 757, IVFPQFS 0.984 at
# 3,422 / 2,494 / 1,389; 1M IVFSQ8 0.982 at 749 / 657 / 274, IVFPQFS 0.979 at 2,502 / 1,825 / 718
# (bench/results/bench_search_tuned_{100000_1000000,300000}_IVFSQ8_IVFPQFS.md). LARGE_FROM: between 100k and 300k.
AUTO = "auto"
AUTO_ABOVE = "IVFSQ8"  # IVF with 8-bit lists re-scored exactly: IVF's recall at ~1.8x its queries per CPU-second
AUTO_LARGE = "IVFPQFS"
IVF_FAMILY = ("IVF", "IVFSQ8")
FLAT_BELOW = 5_000
LARGE_FROM = 200_000


def auto_method(n_vectors, current=None, fast_scan=True):
    """The method `index_method: auto` uses for a gallery of `n_vectors` (`current`: the one it has; it leaves
    a method only below half the size that brought it, so a gallery near a crossover is not rebuilt back and
    forth). `fast_scan`: whether the store has AUTO_LARGE (FAISS does, Milvus not)."""
    if current == AUTO_LARGE and n_vectors >= LARGE_FROM // 2:
        return current
    if fast_scan and n_vectors >= LARGE_FROM:
        return AUTO_LARGE
    if current in IVF_FAMILY and n_vectors >= FLAT_BELOW // 2:
        return current  # (an auto gallery made IVF before IVFSQ8 existed keeps it: no rebuild on an append)
    return "Flat" if n_vectors < FLAT_BELOW else AUTO_ABOVE
