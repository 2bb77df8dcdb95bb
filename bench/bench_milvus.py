"""Milvus Lite against the FAISS gallery on the same random 512-d vectors: build time, search QPS,
few-query latency, recall@1 against exact search, peak memory and disk, per index method.

    .venv/bin/python bench/bench_milvus.py                       # 100k vectors, HNSW32 and Flat
    .venv/bin/python bench/bench_milvus.py --n 20000 --nq 200    # a quick run
    .venv/bin/python bench/bench_milvus.py --methods HNSW32 IVF Flat

Each (store, index method) runs in its own process (`--child`), so its peak RSS is its own; the
embedded Milvus Lite server runs inside that process (pymilvus starts it in threads for a `.db`
URI), so its memory is counted too. Every process first makes the same vectors (seeded) and the
same queries: `near` queries, a gallery vector plus noise at cosine ~0.6 to it (bench_search.py's
"photo of an indexed object"); the truth is exact search (FAISS IndexFlatIP).

  build s     store.create(vectors, labels, paths) end to end (Milvus: inserts in batches of 1000,
              flush = segment index builds, alias publish; FAISS: train, add, write the version)
  QPS         one batched search of all queries (k=1, labels included)
  ms/query    one query per search call, the median of 50 (what a service does per crop batch)
  peak RSS    the process's peak; "data" is the RSS after making the vectors, before the store
  disk MB     the gallery directory / Milvus Lite .db directory after the build
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)

from bench.harness import peak_rss_mb  # noqa: E402

DIM = 512
TAG = "BENCH_RESULT "
NEAR_NOISE = 1.33


def random_unit(n, seed, chunk=100_000):
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), DIM), dtype=np.float32)
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def near_queries(base, nq, seed):
    rng = np.random.default_rng(seed)
    src = base[rng.integers(0, len(base), nq)]
    q = src + NEAR_NOISE * rng.standard_normal(src.shape, dtype=np.float32) / np.sqrt(DIM)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def current_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def disk_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2 ** 20


def child(store, method, n, nq, workdir):
    import faiss

    faiss.omp_set_num_threads(2)
    base = random_unit(n, seed=n)
    labels = [f"c{i % 1000}" for i in range(n)]
    paths = [f"img/{i:07d}.jpg" for i in range(n)]
    queries = near_queries(base, nq, seed=2)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(base)
    truth = flat.search(queries, 1)[1][:, 0]
    del flat
    data_rss = current_rss_mb()
    if store == "faiss":
        from ppshitu.gallery import Gallery
        location = os.path.join(workdir, "faiss")
        t = time.perf_counter()
        g = Gallery.create(location, DIM, dist_type="IP", index_method=method, vectors=base, labels=labels,
                           paths=paths)
        build = time.perf_counter() - t
        ids_of = {i: i for i in range(n)}
        where = location
    else:
        from ppshitu.gallery.base import path_hash
        from ppshitu.gallery.milvus_store import MilvusStore
        location = os.path.join(workdir, "milvus.db")
        t = time.perf_counter()
        g = MilvusStore.create(location, DIM, dist_type="IP", index_method=method, vectors=base, labels=labels,
                               paths=paths)
        build = time.perf_counter() - t
        ids_of = {path_hash(p): i for i, p in enumerate(paths)}
        where = location
    g.search(queries[:10], k=1)  # warm
    t = time.perf_counter()
    _, _, ids = g.search(queries, k=1)
    qps = nq / (time.perf_counter() - t)
    found = np.array([ids_of.get(int(i), -1) for i in ids[:, 0]])
    recall = float(np.mean(found == truth))
    single = []
    for i in range(50):
        t = time.perf_counter()
        g.search(queries[i:i + 1], k=5)
        single.append(time.perf_counter() - t)
    count = len(g)
    result = {"store": store, "method": method, "n": n, "nq": nq, "build_s": round(build, 2),
              "build_vec_per_s": round(n / build), "qps": round(qps, 1),
              "ms_per_query": round(1000 * float(np.median(single)), 2),
              "recall1": round(recall, 4), "count": count, "data_rss_mb": round(data_rss, 1),
              "disk_mb": round(disk_mb(where), 1)}
    if store == "milvus":
        result["server"] = g.server
        result["index"] = g.meta["milvus_index"]
    close = getattr(g, "close", None)
    if close:
        close()
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(TAG + json.dumps(result), flush=True)


def run_child(store, method, n, nq, timeout):
    workdir = tempfile.mkdtemp(prefix=f"bench_milvus_{store}_")
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", store, method, str(n), str(nq),
                               workdir], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise RuntimeError(f"{store} {method} failed:\n{proc.stderr[-3000:]}")


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="gallery vectors (default 100k)")
    p.add_argument("--nq", type=int, default=1000, help="queries")
    p.add_argument("--methods", nargs="+", default=["HNSW32", "Flat"], choices=["Flat", "HNSW32", "IVF"])
    p.add_argument("--stores", nargs="+", default=["faiss", "milvus"], choices=["faiss", "milvus"])
    p.add_argument("--timeout", type=int, default=1800, help="seconds per (store, method) process")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "bench_milvus.md"))
    p.add_argument("--child", nargs=5, metavar=("STORE", "METHOD", "N", "NQ", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        store, method, n, nq, workdir = args.child
        return child(store, method, int(n), int(nq), workdir)
    started = time.perf_counter()
    results = []
    for method in args.methods:
        for store in args.stores:
            r = run_child(store, method, args.n, args.nq, args.timeout)
            results.append(r)
            print(json.dumps(r), flush=True)
    import faiss
    import pymilvus
    from importlib import metadata
    header = ["store", "index", "N", "build s", "build vec/s", "QPS (batch)", "ms/query (1)", "recall@1",
              "peak RSS MB", "of which data MB", "disk MB"]
    rows = [[("Milvus Lite " + metadata.version("milvus-lite")) if r["store"] == "milvus" else
             f"FAISS gallery (faiss {faiss.__version__})",
             r["method"] + (f" -> {r['index']['index_type']} {r['index']['params']} {r['index']['search_params']}"
                            if r["store"] == "milvus" else ""),
             f"{r['n']:,}", r["build_s"], f"{r['build_vec_per_s']:,}", f"{r['qps']:,.0f}", r["ms_per_query"],
             f"{r['recall1']:.3f}", f"{r['peak_rss_mb']:,.0f}", f"{r['data_rss_mb']:,.0f}", f"{r['disk_mb']:,.0f}"]
            for r in results]
    text = (f"{table(rows, header)}\n\n{DIM}-d random unit vectors, IP, {args.nq} near queries (cosine ~0.6 to a "
            f"gallery vector), k=1 for QPS and recall, k=5 for the one-query latency; OMP/FAISS threads 2, "
            f"{os.cpu_count()} CPUs (shared); pymilvus {pymilvus.__version__}; each row its own process; "
            f"total {time.perf_counter() - started:.0f} s\n")
    print("\n" + text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(f"# bench/bench_milvus.py {' '.join(sys.argv[1:])}\n\n{text}")


if __name__ == "__main__":
    main()
