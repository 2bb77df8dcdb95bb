"""Search tuned on the gallery's own vectors, on realistic vectors (bench/realistic_vectors.py): per index and
setting, QPS, recall@1 against exact search, build time and index memory, at 100k and 1M 512-d vectors;
and the size where HNSW32 (tuned) overtakes Flat (indexes.FLAT_BELOW, `index_method: auto`).

    .venv/bin/python bench/bench_search_tuned.py                  # 100k and 1M, + the crossover sizes
    .venv/bin/python bench/bench_search_tuned.py --quick          # 20k, a smoke run
    .venv/bin/python bench/bench_search_tuned.py --sizes 100000 --methods HNSW32

Settings compared per approximate index:
  tuned         what the gallery measured on its own vectors at build (search_tuning.py: recall@1 >= 0.98
                on queries made from the gallery: perturbed for HNSW, leave-one-out for IVF), the value a
                gallery now searches with
  FAISS default HNSW efSearch 16, IVF nprobe 1: also PP-ShiTu's settings (its GalleryBuilder builds
                index_factory("HNSW32") and never sets efSearch; its IVF is "IVF{N/8},Flat" with FAISS'
                nprobe 1 — at N/8 lists; here the IVF is ppshitu's ~4 sqrt(N) lists: N/8 lists take
                k-means hours at 1M, see bench/run_all.py's search rows)
  old default   ppshitu's previous fixed values, fitted on random vectors: ef_search 512, nprobe nlist/5
  tuned for 0.95 the same tuner (search_tuning.tune) on the same build asked for recall@1 0.95: the smallest
                value the Done-when's recall needs, chosen by the gallery's own vectors, not by the held-out truth
Methods: Flat, IVF (float32 lists), IVFSQ8 (8-bit codes, the few best re-scored exactly: index_method auto's
choice above FLAT_BELOW), IVFPQFS (4-bit PQ fast-scan codes, 64 candidates re-scored exactly), HNSW32.
Queries are held-out photos of indexed objects: the generator's 11th view of random classes whose 10 other
views are in the gallery (the gallery never holds the query vector itself). Recall@1: the returned top-1 is
exact search's top-1 (by id; "ties": by score within SCORE_TOL). QPS through Gallery.search (k=1, labels
included) on --threads FAISS threads, three ways: all queries in one call, 64 per call (an image's or a
folder's boxes), one per call. Build s: Gallery.create end to end (index, tuning, writing the version);
"tune s" is the tuning's share. Index MB: the serialized FAISS index (what a reader holds in memory).
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import faiss  # noqa: E402

from bench.bench_search import table  # noqa: E402
from bench.realistic_vectors import DEFAULTS, realistic_vectors  # noqa: E402
from ppshitu.gallery import Gallery, search_tuning  # noqa: E402

DIM = 512
VIEWS = DEFAULTS["views_per_class"]
IVFS = ("IVF", "IVFSQ8", "IVFPQFS")
FAISS_DEFAULT = {"HNSW32": 16, **{m: 1 for m in IVFS}}
OLD_DEFAULT = {"HNSW32": lambda nlist: 512, **{m: (lambda nlist: max(16, -(-nlist // 5))) for m in IVFS}}
KNOB = {"HNSW32": "ef_search", **{m: "nprobe" for m in IVFS}}
CROSSOVER_SIZES = (2_000, 5_000, 10_000, 20_000, 50_000)
FLAT_QUERIES = 200  # Flat's QPS is measured on this many of the queries (exact: recall 1 by construction)
SINGLES = 200       # one-query-per-call QPS on this many queries
CORES = 2           # the capacity columns: queries per CPU-second x this many cores
HEADER = ["index", "N", "search setting", "build s", "tune s", "QPS wall all/call", "QPS wall 64/call",
          "QPS wall 1/call", "QPS cpu all/call", "QPS cpu 64/call", "QPS cpu 1/call", "recall@1 vs exact",
          "recall@1 ties", "index MB", "load"]


def gallery_and_queries(n, nq, seed=0):
    """(gallery [n, DIM], labels [n], queries [nq, DIM]): VIEWS views per class in the gallery, and one
    more view of nq random classes as the queries."""
    n_classes = -(-n // VIEWS)
    v, lab = realistic_vectors(n_classes * (VIEWS + 1), DIM, seed=seed, views_per_class=VIEWS + 1)
    last = (np.arange(len(v)) % (VIEWS + 1)) == VIEWS
    gallery, glab = v[~last][:n], lab[~last][:n]
    rng = np.random.default_rng(seed + 7)
    picked = rng.choice(int(glab.max()) + 1, size=nq, replace=nq > glab.max() + 1)
    return np.ascontiguousarray(gallery), glab, np.ascontiguousarray(v[last][picked])


def exact_top1(base, queries):
    """(exact top-1 scores, ids) of each query."""
    index = faiss.IndexFlatIP(DIM)
    index.add(base)
    d, i = index.search(queries, 1)
    return d[:, 0], i[:, 0]


def measure(g, queries, truth, exact_scores, rounds=2, singles=SINGLES):
    """QPS three ways and recall@1 vs exact: "all" every query in one Gallery.search call (best of `rounds`),
    "64" 64 queries per call (predict_system / eval search the boxes of an image or folder together), "1" one
    query per call (the first `singles` queries); per way the wall-clock QPS ("qps_<way>") and the capacity of
    CORES cores from the CPU time the process spent ("cpu_qps_<way>": queries per CPU-second x CORES, what the
    wall clock would show on idle cores if the threads scale; on a shared machine the wall clock shows the
    other jobs too). "recall_at_1": the returned id is exact search's top-1; "recall_tie": the returned score
    is within search_tuning.SCORE_TOL of exact's top-1 score (a near-tie is not a miss); "load": the 1-minute
    load average after."""
    out, scores, ids = {}, None, None
    m = min(singles, len(queries))
    ways = [("all", [queries] * rounds), ("64", [[queries[s:s + 64] for s in range(0, len(queries), 64)]]),
            ("1", [[queries[s:s + 1] for s in range(m)]] if m else [])]
    for way, runs in ways:
        best = cpu_best = 0.0
        for run in runs:
            calls = run if isinstance(run, list) else [run]
            t, c = time.perf_counter(), time.process_time()
            for batch in calls:
                _, sc, found = g.search(batch, k=1)
                if way == "all":
                    scores, ids = sc, found
            n = sum(len(b) for b in calls)
            best = max(best, n / (time.perf_counter() - t))
            cpu_best = max(cpu_best, n * CORES / max(time.process_time() - c, 1e-9))
        out[f"qps_{way}"], out[f"cpu_qps_{way}"] = best, cpu_best
    return {**out, "qps": out["qps_all"], "recall_at_1": float(np.mean(ids[:, 0] == truth)),
            "recall_tie": float(np.mean(scores[:, 0] >= exact_scores - search_tuning.SCORE_TOL)),
            "load": os.getloadavg()[0]}


def _variants(g, method, names, setting):
    """(row name, knob value) per setting compared on one build: the stored tuned value (target 0.98), the same
    tuner asked for 0.95 (what the Done-when's recall needs), FAISS's default = PP-ShiTu's, the old default."""
    knob = KNOB.get(method)
    if knob is None:
        return knob, [("exact", None)]
    nlist = faiss.extract_index_ivf(g.index).nlist if knob == "nprobe" else None
    at95 = search_tuning.tune(lambda q, value: g.set_search_params(**{knob: value})._top(q, 2), g.vectors, g.ids,
                              names, g.higher_is_better, knob, limit=nlist, target=0.95)
    rec = setting["record"]
    return knob, [(f"tuned {knob}={setting['value']} (target 0.98: {rec['recall_at_1']:.3f} on its own)",
                   setting["value"]),
                  (f"tuned for 0.95 {knob}={at95['value']} ({at95['recall_at_1']:.3f} on its own)", at95["value"]),
                  (f"FAISS default = PP-ShiTu {knob}={FAISS_DEFAULT[method]}", FAISS_DEFAULT[method]),
                  (f"old default {knob}={OLD_DEFAULT[method](nlist)}", OLD_DEFAULT[method](nlist))]


def bench_size(n, methods, nq, workdir, progress=print, max_hnsw=None):
    rows, raw = [], []
    progress(f"[{n:,}] generating realistic vectors ...")
    base, labels, queries = gallery_and_queries(n, nq)
    exact_scores, truth = exact_top1(base, queries)
    names = [str(x) for x in labels]
    for method in methods:
        if method == "HNSW32" and max_hnsw and n > max_hnsw:
            rows.append([method, f"{n:,}", f"not built (--max-hnsw {max_hnsw:,})"] + [""] * (len(HEADER) - 3))
            continue
        d = os.path.join(workdir, f"{method}_{n}")
        progress(f"[{n:,}] building {method} ... (load average {os.getloadavg()[0]:.1f})")
        t = time.perf_counter()
        g = Gallery.create(d, DIM, dist_type="IP", index_method=method, vectors=base, labels=names)
        build = time.perf_counter() - t
        mb = len(faiss.serialize_index(g.index)) / 2**20
        setting = g.search_setting()
        tune_s = setting["record"]["seconds"] if setting else 0.0
        nlist = f"nlist {faiss.extract_index_ivf(g.index).nlist}" if "IVF" in method else ""
        knob, variants = _variants(g, method, names, setting)
        for name, value in variants:
            if value is not None:
                g.set_search_params(**{knob: value})
            if knob is None:  # exact search answers every query right: its speed on a few of them
                m = measure(g, queries[:FLAT_QUERIES], truth[:FLAT_QUERIES], exact_scores[:FLAT_QUERIES],
                            rounds=1, singles=50)
            else:
                m = measure(g, queries, truth, exact_scores)
            row = ([method, f"{n:,}", f"{name} {nlist}".strip(), f"{build:.1f}", f"{tune_s:.1f}"]
                   + [f"{m[f'{kind}qps_{way}']:,.0f}" for kind in ("", "cpu_") for way in ("all", "64", "1")]
                   + [f"{m['recall_at_1']:.3f}", f"{m['recall_tie']:.3f}", f"{mb:,.0f}", f"{m['load']:.1f}"])
            rows.append(row)
            raw.append({"method": method, "n": n, "setting": name, "value": value, "build_s": build,
                        "tune_s": tune_s, "index_mb": mb, **m})
            progress(" | ".join(row))
        g.close()
        del g
        shutil.rmtree(d, ignore_errors=True)
    return rows, raw


def crossover(sizes, nq, workdir, method="HNSW32", progress=print):
    """Flat vs `method` at its tuned setting, QPS per size: where `method` gets faster is indexes.FLAT_BELOW."""
    rows = []
    for n in sizes:
        base, labels, queries = gallery_and_queries(n, nq, seed=3)
        exact_scores, truth = exact_top1(base, queries)
        names = [str(x) for x in labels]
        out = {}
        for name in ("Flat", method):
            d = os.path.join(workdir, f"x_{name}_{n}")
            g = Gallery.create(d, DIM, index_method=name, vectors=base, labels=names)
            m = measure(g, queries, truth, exact_scores, rounds=3, singles=0)
            out[name] = (m["qps"], m["recall_at_1"])
            setting = g.search_setting()
            g.close()
            shutil.rmtree(d, ignore_errors=True)
        rows.append([f"{n:,}", f"{out['Flat'][0]:,.0f}", f"{out[method][0]:,.0f}",
                     f"{setting['param']}={setting['value']}", f"{out[method][1]:.3f}",
                     f"{out[method][0] / out['Flat'][0]:.2f}"])
        progress(" | ".join(rows[-1]))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20k vectors, 200 queries, crossover at 2k and 5k")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--methods", nargs="+", default=["Flat", "IVF", "IVFSQ8", "HNSW32"])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    p.add_argument("--queries-1m", type=int, default=500, help="queries at 1M and above (exact search is slow)")
    p.add_argument("--max-hnsw", type=int, default=None, help="build HNSW32 only up to this size")
    p.add_argument("--no-crossover", action="store_true")
    p.add_argument("--crossover-only", action="store_true", help="only the Flat-vs-method crossover table")
    p.add_argument("--crossover-method", default="HNSW32", choices=["HNSW32", *IVFS])
    p.add_argument("--crossover-sizes", type=int, nargs="+", default=list(CROSSOVER_SIZES))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = p.parse_args()
    crossover_sizes = args.crossover_sizes
    if args.quick:
        args.sizes, args.queries, crossover_sizes = [20_000], 200, (2_000, 5_000)
    faiss.omp_set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="bench_search_tuned_")
    t = time.perf_counter()
    load = os.getloadavg()
    default = args.sizes == p.get_default("sizes") and args.methods == p.get_default("methods")
    name = ("bench_search_tuned_quick.md" if args.quick else
            f"bench_search_tuned_crossover_{args.crossover_method}"
            f"{'' if args.crossover_sizes == list(CROSSOVER_SIZES) else '_small'}.md" if args.crossover_only else
            "bench_search_tuned.md" if default else
            f"bench_search_tuned_{'_'.join(map(str, args.sizes))}_{'_'.join(args.methods)}.md")
    if args.crossover_only:
        args.sizes = []
    rows, xrows = [], []
    try:
        for n in args.sizes:
            nq = args.queries_1m if n >= 1_000_000 else args.queries
            rows += bench_size(n, args.methods, nq, workdir, max_hnsw=args.max_hnsw)[0]
            _save(args, name, rows, xrows, load, t)  # after each size: a long run keeps what it measured
        if not args.no_crossover:
            xrows = crossover(crossover_sizes, args.queries, workdir, args.crossover_method)
            xrows.insert(0, args.crossover_method)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + _save(args, name, rows, xrows, load, t))


def _save(args, name, rows, xrows, load, t):
    from ppshitu.utils.cpu import describe

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    header = HEADER
    xheader = ["N", "Flat QPS", f"{xrows[0]} tuned QPS", "tuned setting", "its recall@1", "speed vs Flat"] \
        if xrows else []
    text = ((f"{table(rows, header)}\n\n" if rows else "")
            + (f"Crossover (index_method: auto: Flat below the size where {xrows[0]} at its tuned setting gets "
               f"faster):\n\n{table(xrows[1:], xheader)}\n\n" if xrows else "")
            + f"{DIM}-d realistic vectors (bench/realistic_vectors.py, {VIEWS} views per class), IP, "
              f"{args.queries} held-out queries ({args.queries_1m} at 1M), k=1, {args.threads} FAISS threads, "
              f"{os.cpu_count()} CPUs; {describe()}; load average {load[0]:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} now (a shared machine: QPS and build times are under that load); "
              f"peak RSS {peak:.1f} GB; {time.perf_counter() - t:.0f} s. QPS through Gallery.search (k=1, labels "
              f"included): all held-out queries in one call, 64 per call, one per call ({SINGLES} queries); "
              f"'recall@1 ties': the returned score within {search_tuning.SCORE_TOL} of exact's top-1 score; "
              f"'QPS cpu': queries per CPU-second of this process x {CORES} cores (the capacity of {CORES} cores "
              f"not shared with other jobs, if the threads scale); "
              f"'load': the 1-minute load average right after that row's measurement\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
        f.write(f"# bench/bench_search_tuned.py {' '.join(sys.argv[1:])}\n\n{text}")
    return text

if __name__ == "__main__":
    main()
