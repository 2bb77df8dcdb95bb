"""find_duplicates' speed on a large folder, this checkout against an earlier commit, side by side.

    .venv/bin/python bench/bench_duplicates_speed.py --base 25e274f [--n 5000]

Both sides run bench_duplicates.measure_scale (the same folder of N generated images: designed images and small
photo crops, a fifth with an edited copy; index, calibration, candidates, verification, grouping) at the same
time, each in its own process (the earlier commit exported with `git archive` into a temporary folder), so both
see the same load on a shared machine. Reported per side: wall seconds of each step, and the CPU seconds of the
whole run (user + system, all threads: on a machine shared with other jobs the wall time says as much about
them). Writes bench/results/bench_duplicates_speed.md and .json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
MARK = "SPEED-RESULT "


def bench_cpu():
    """User + system CPU seconds of this process, all threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_side(root, n):
    """measure_scale of the code under `root` (run as a child process: prints MARK + JSON)."""
    sys.path[:0] = [root, os.path.join(root, "bench")]
    import numpy as np

    import bench_duplicates as bench
    from ppshitu.cli import config_parser, load_cli_config
    from ppshitu.library import common
    from ppshitu.schemas import INFER_SCHEMA

    cfg = load_cli_config(config_parser("speed").parse_args(["-c", bench.CONFIG]), INFER_SCHEMA)
    common.setup_tool(cfg)
    rec, _ = common.predictors(cfg, detect=False)
    work = tempfile.mkdtemp(prefix="dup-speed-")
    os.environ["PPSHITU_DUPLICATES_CACHE"] = os.path.join(work, "cache")
    cpu, run = {}, bench.run_ppshitu

    def timed(*a, **k):   # CPU seconds of the index + find_duplicates run (both versions of measure_scale call it)
        c0 = bench_cpu()
        out = run(*a, **k)
        cpu["cpu_seconds"] = round(bench_cpu() - c0, 1)
        return out
    bench.run_ppshitu = timed
    try:
        res = {**bench.measure_scale(n, cfg, rec, work, 10, 2, np.random.default_rng(99)), **cpu}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(MARK + json.dumps(res), flush=True)


def render(res):
    lines = ["# find_duplicates on a large folder: this checkout vs an earlier commit, side by side", "",
             f"`bench/bench_duplicates_speed.py --base {res['base_rev']} --n {res['n']}`; both sides at the same time on "
             f"the same machine. {res['cpu']}; {res['cores']} cores shared with other jobs (load average "
             f"{res['load_avg_end']} at the end).", "",
             "| code | images | wall s | CPU s (all threads) | index s | calibration s | find s | verification s | "
             "grouping s | candidate pairs | pairs verified |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for side in ("base", "head"):
        s = res[side]
        f = s.get("find_split") or {}
        lines.append(f"| {res[side + '_rev']} | {s['images']} | {s['seconds_total']} | {s.get('cpu_seconds', '?')} | "
                     f"{s['index_s']} | {s['calibration_s']} | {s['find_s']} | {f.get('verification')} | "
                     f"{f.get('grouping')} | {s['candidates']} | {s['verified_pairs']} |")
    b, h = res["base"], res["head"]
    lines += ["", f"Ratio (base / this checkout): wall {b['seconds_total'] / h['seconds_total']:.2f}x, find step "
              f"{b['find_s'] / h['find_s']:.2f}x" + (f", CPU {b['cpu_seconds'] / h['cpu_seconds']:.2f}x"
                                                     if b.get("cpu_seconds") and h.get("cpu_seconds") else "") + ".",
              ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the earlier commit to compare with")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--side", help=argparse.SUPPRESS)   # (internal: run one side in this process)
    args = p.parse_args(argv)
    if args.side:
        return one_side(args.side, args.n)
    sys.path.insert(0, ROOT)
    from ppshitu.utils.cpu import describe

    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.base], check=True, capture_output=True,
                         text=True).stdout.strip()
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    base_dir = tempfile.mkdtemp(prefix="dup-speed-base-")
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_dir], input=archive, check=True)
        procs = {side: subprocess.Popen([sys.executable, os.path.abspath(__file__), "--base", rev, "--n", str(args.n),
                                         "--side", root], cwd=root, stdout=subprocess.PIPE, text=True)
                 for side, root in (("base", base_dir), ("head", ROOT))}
        res = {"base_rev": rev, "head_rev": f"{head} (this checkout)", "n": args.n, "cpu": describe(),
               "cores": os.cpu_count()}
        for side, proc in procs.items():
            out, _ = proc.communicate()
            found = [line[len(MARK):] for line in out.splitlines() if line.startswith(MARK)]
            if proc.returncode or not found:
                raise SystemExit(f"the {side} side failed (exit {proc.returncode})")
            res[side] = json.loads(found[-1])
        res["load_avg_end"] = "/".join(f"{x:.1f}" for x in os.getloadavg())
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    text = render(res)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_duplicates_speed.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "bench_duplicates_speed.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    print(text)
    return res


if __name__ == "__main__":
    main()
