"""Does a better-built HNSW graph reach recall@1 0.95 on gallery-like vectors at speed? (issue 26)

    .venv/bin/python bench/bench_hnsw_build.py [--n 100000]

HNSW32 on bench/realistic_vectors.py's vectors (as bench_search_tuned.py makes the gallery and its 1,000 held-out
queries) with FAISS's efConstruction 40 (ppshitu's and PP-ShiTu's build) against 200, flat vectors against 8-bit
scalar-quantised ones (IndexHNSWSQ), efSearch 16-256: recall@1 by id against exact search and queries per second
of 2 cores from the process's CPU time (all queries in one call; the machine is shared, so wall clock is not).
Writes bench/results/bench_hnsw_build.md and .json.
"""
import argparse
import json
import os
import sys
import time

import faiss
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench_search_tuned import CORES, DIM, exact_top1, gallery_and_queries  # noqa: E402

BUILDS = ((40, "flat"), (200, "flat"), (200, "sq8"))  # (efConstruction, stored vectors)
EF_SEARCH = (16, 32, 64, 128, 256)


def build(vectors, ef_construction, kind):
    if kind == "flat":
        index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.hnsw.efConstruction = ef_construction
    index.add(vectors)
    return index


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1000)
    args = p.parse_args(argv)
    from ppshitu.utils.cpu import describe

    faiss.omp_set_num_threads(CORES)
    info = {"cpu": describe(), "load_start": round(os.getloadavg()[0], 1), "n": args.n}
    print(info["cpu"], flush=True)
    gallery, _, queries = gallery_and_queries(args.n, args.queries)
    _, truth = exact_top1(gallery, queries)
    rows = []
    for efc, kind in BUILDS:
        c = time.process_time()
        index = build(gallery, efc, kind)
        build_cpu = time.process_time() - c
        for ef in EF_SEARCH:
            index.hnsw.efSearch = ef
            c = time.process_time()
            _, ids = index.search(queries, 1)
            cpu = time.process_time() - c
            rows.append({"ef_construction": efc, "vectors": kind, "ef_search": ef, "build_cpu_s": build_cpu,
                         "recall_at_1": float(np.mean(ids[:, 0] == truth)), "cpu_qps": CORES * len(queries) / cpu})
            print(f"efConstruction {efc} {kind} ef {ef}: recall@1 {rows[-1]['recall_at_1']:.3f}, "
                  f"{rows[-1]['cpu_qps']:,.0f} q/s", flush=True)
    info["load_end"] = round(os.getloadavg()[0], 1)
    write(rows, info)


def write(rows, info):
    out = os.path.join(ROOT, "bench", "results", "bench_hnsw_build")
    lines = ["# HNSW32 build quality on gallery-like vectors", "",
             f"`bench/bench_hnsw_build.py` ({info['cpu']}; load {info['load_start']} -> {info['load_end']}): "
             f"{info['n']:,} realistic 512-d vectors (bench/realistic_vectors.py), 1,000 held-out views as queries, "
             "inner product, k=1; q/s: 2 cores' worth from the process CPU time, all queries in one call.", "",
             "| efConstruction | vectors | build CPU s | " + " | ".join(f"ef {e}" for e in EF_SEARCH) + " |",
             "|---|---|---|" + "---|" * len(EF_SEARCH)]
    for efc, kind in BUILDS:
        r = [x for x in rows if x["ef_construction"] == efc and x["vectors"] == kind]
        lines.append(f"| {efc} | {kind} | {r[0]['build_cpu_s']:.0f} | " +
                     " | ".join(f"{x['recall_at_1']:.3f} @ {x['cpu_qps']:,.0f}" for x in r) + " |")
    lines += ["", "Cells: recall@1 vs exact @ queries/s."]
    text = "\n".join(lines) + "\n"
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
