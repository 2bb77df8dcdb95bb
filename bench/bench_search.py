"""Gallery build rate, search QPS, recall@1 against exact search and memory, per index
type, on random L2-normalized 512-d vectors (the hard case for approximate search).

    .venv/bin/python bench/bench_search.py            # 100k and 1M (HNSW32 at 1M only with --full)
    .venv/bin/python bench/bench_search.py --quick    # 20k vectors, a smoke run
    .venv/bin/python bench/bench_search.py --sizes 100000 --methods HNSW32 IVF

Two query sets, recall@1 against exact search for each:
  near    a gallery vector plus noise, cosine ~0.6 to it (a photo of an indexed object)
  random  independent random vectors, related to no gallery vector (worst case: every
          vector is almost equally far, so approximate search needs near-exhaustive settings)
Build time is Gallery.create end to end (train, add, write the version to disk).
QPS is one batched Gallery.search call over the near queries (k=1, labels included).
"index MB" is the serialized FAISS index, what a reader holds in memory; the raw
vectors (N x 512 x 4 bytes) are kept on disk and memory-mapped.
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import faiss  # noqa: E402

from ppshitu.gallery import Gallery  # noqa: E402

DIM = 512
NEAR_NOISE = 1.33  # |noise| / |vector|: cosine 1 / sqrt(1 + 1.33^2) = 0.6 to the source
SWEEPS = {"HNSW32": ("ef_search", (64, 256, None, 1024)), "IVF": ("nprobe", (8, None, 1000)),
          "IVFPQ": ("nprobe", (8, None))}


def random_unit(n, seed, chunk=100_000):
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), DIM), dtype=np.float32)
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top1(base, queries):
    index = faiss.IndexFlatIP(DIM)
    index.add(base)
    return index.search(queries, 1)[1][:, 0]


def near_queries(base, nq, seed):
    rng = np.random.default_rng(seed)
    src = base[rng.integers(0, len(base), nq)]
    q = src + NEAR_NOISE * rng.standard_normal(src.shape, dtype=np.float32) / np.sqrt(DIM)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def measure(g, sets, param=None, value=None):
    """QPS on the first query set; recall@1 on each."""
    if param is not None:
        g.set_search_params(**{param: value})
    out = []
    for queries, truth in sets:
        t = time.perf_counter()
        _, _, ids = g.search(queries, k=1)
        out.append((len(queries) / (time.perf_counter() - t), float(np.mean(ids[:, 0] == truth))))
    return out[0][0], [recall for _, recall in out]


def run(sizes, methods, nq, full, workdir):
    rows = []
    for n in sizes:
        base = random_unit(n, seed=n)
        sets = [(q, exact_top1(base, q)) for q in (near_queries(base, nq, seed=2), random_unit(nq, seed=1))]
        labels = [f"c{i % 1000}" for i in range(n)]
        for method in methods:
            if method == "HNSW32" and n > 200_000 and not full:
                rows.append([method, n, "-", "skipped (--full)", "", "", "", "", ""])
                continue
            d = os.path.join(workdir, f"{method}_{n}")
            t = time.perf_counter()
            g = Gallery.create(d, DIM, dist_type="IP", index_method=method, vectors=base, labels=labels)
            build = time.perf_counter() - t
            mb = len(faiss.serialize_index(g.index)) / 2**20
            sweep = [None] if method not in SWEEPS else SWEEPS[method][1]
            param = SWEEPS.get(method, (None,))[0]
            for value in sweep:
                if value is None and param is not None:
                    g = Gallery.open(d)  # the default
                qps, (near, rand) = measure(g, sets, param if value is not None else None, value)
                setting = "exact" if param is None else (
                    f"{param}={value}" if value is not None else f"{param}={_default(g, param)} (default)")
                rows.append([method, n, setting, f"{build:.1f}", f"{n / build:,.0f}", f"{qps:,.0f}",
                             f"{near:.3f}", f"{rand:.3f}", f"{mb:,.0f}"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
            g.close()
            del g
            shutil.rmtree(d, ignore_errors=True)
        del base
    return rows


def _default(g, param):
    if param == "ef_search":
        return g.method.ef_search
    return g.method.probes(faiss.extract_index_ivf(g.index).nlist)


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20k vectors, 200 queries: a smoke run")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--methods", nargs="+", default=["Flat", "IVF", "IVFPQ", "HNSW32"])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    p.add_argument("--full", action="store_true", help="also build HNSW32 at 1M (takes many minutes on 2 cores)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args()
    if args.quick:
        args.sizes, args.queries = [20_000], 200
    faiss.omp_set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="bench_gallery_")
    try:
        t = time.perf_counter()
        rows = run(args.sizes, args.methods, args.queries, args.full, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = ["index", "N", "search setting", "build s", "build vec/s", "QPS", "recall@1 near",
              "recall@1 random", "index MB"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    text = (f"{table(rows, header)}\n\n{DIM}-d random unit vectors, IP, {args.queries} queries per set, k=1, "
            f"{args.threads} FAISS threads, {os.cpu_count()} CPUs; peak RSS {peak:.1f} GB; "
            f"total {time.perf_counter() - t:.0f} s\n")
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    default = args.sizes == p.get_default("sizes") and args.methods == p.get_default("methods")
    name = ("bench_search_quick.md" if args.quick else "bench_search.md" if default else
            f"bench_search_{'_'.join(map(str, args.sizes))}_{'_'.join(args.methods)}.md")
    with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
        f.write(f"# bench/bench_search.py {' '.join(sys.argv[1:])}\n\n{text}")


if __name__ == "__main__":
    main()
