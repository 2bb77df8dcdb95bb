"""find_duplicates' speed on a large folder, this checkout against an earlier commit, side by side.

    .venv/bin/python bench/bench_duplicates_speed.py --base 25e274f [--n 5000]
    .venv/bin/python bench/bench_duplicates_speed.py --tool [--n 10000] [--folder DIR]

Both sides run bench_duplicates.measure_scale (the same folder of N generated images: designed images and small
photo crops, a fifth with an edited copy; index, calibration, candidates, verification, grouping) at the same
time, each in its own process (the earlier commit exported with `git archive` into a temporary folder), so both
see the same load on a shared machine. Reported per side: wall seconds of each step, and the CPU seconds of the
whole run (user + system, all threads: on a machine shared with other jobs the wall time says as much about
them). Writes bench/results/bench_duplicates_speed.md and .json.

`--tool`: tools/find_duplicates.py itself, as a user runs it (`--dir FOLDER`, its own temporary index, calibration
measured, report written), on a generated folder of N images (bench_duplicates.write_scale_folder; `--folder`
keeps it for a rerun): wall seconds, the tool process's CPU seconds (user + system, all threads), the load
average sampled through the run, and the steps' seconds from its printed lines and report. Its section replaces
the previous `--tool` section of the .md; the side-by-side section above it is kept.
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
TOOL_HEADING = "## tools/find_duplicates.py end to end"


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


def _count_images(folder):
    return len([f for f in os.listdir(folder) if f.endswith(".jpg")]) if os.path.isdir(folder) else 0


def tool_run(n, folder):
    """tools/find_duplicates.py on `folder` (written by write_scale_folder unless it holds n images): the
    measured figures (dict)."""
    import re
    import resource
    import threading
    import time

    import numpy as np

    sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
    import bench_duplicates as bench

    made = None
    if _count_images(folder) != n:
        if os.path.exists(folder) and os.listdir(folder):
            raise SystemExit(f"--folder {folder}: holds {_count_images(folder)} images, not {n}: give an empty or "
                             f"new folder")
        t = time.perf_counter()
        bench.write_scale_folder(n, folder, np.random.default_rng(99))
        made = round(time.perf_counter() - t, 1)
        print(f"wrote {n} images into {folder} in {made} s", flush=True)
    work = tempfile.mkdtemp(prefix="dup-tool-")
    env = dict(os.environ, PPSHITU_DUPLICATES_CACHE=os.path.join(work, "cache"))
    cmd = [sys.executable, os.path.join(ROOT, "tools", "find_duplicates.py"), "-c", bench.CONFIG, "--dir", folder,
           "--out", os.path.join(work, "report"), "--workers", "2"]
    loads, done = [], threading.Event()

    def sample():   # the 1-minute load average every 15 s through the run
        while not done.wait(15):
            loads.append(os.getloadavg()[0])
    threading.Thread(target=sample, daemon=True).start()
    load_start = os.getloadavg()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        done.set()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise SystemExit(f"tools/find_duplicates.py failed (exit {proc.returncode})")
        with open(os.path.join(work, "report", "duplicates.json"), encoding="utf-8") as f:
            report = json.load(f)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = proc.stdout
    sync = re.search(r"^added=(\d+) .* seconds=([\d.]+)$", out, re.M)
    cal = re.search(r"^calibration on this folder: .*; (\d+) s$", out, re.M)
    last = re.search(r"^images=.*$", out, re.M)
    return {"images": n, "folder_written_s": made, "wall_s": round(wall, 1),
            "cpu_s": round((c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime), 1),
            "load_start": [round(x, 1) for x in load_start], "load_end": [round(x, 1) for x in os.getloadavg()],
            "load_1min_mean": round(float(np.mean(loads)), 1) if loads else None,
            "load_1min_max": round(float(max(loads)), 1) if loads else None,
            "index_s": float(sync.group(2)) if sync else None, "calibration_s": int(cal.group(1)) if cal else None,
            "find_split": report.get("seconds"), "candidates": report.get("candidates"),
            "verified_pairs": report.get("verified_pairs"), "summary": last.group(0) if last else None,
            "calibration_line": next((line for line in out.splitlines() if line.startswith("calibration")), None)}


def render_tool(t, cpu, cores, head):
    f = t.get("find_split") or {}
    return "\n".join([
        TOOL_HEADING, "",
        f"`bench/bench_duplicates_speed.py --tool --n {t['images']}` at {head}: `tools/find_duplicates.py -c "
        f"configs/inference/inference_general.yaml --dir FOLDER --workers 2` on a generated folder of "
        f"{t['images']} images (bench_duplicates.write_scale_folder: designed images and small photo crops, a fifth "
        f"with an edited copy), from nothing: its own temporary index, calibration measured, report written. "
        f"{cpu}; {cores} cores shared with other jobs.", "",
        "| images | wall s | wall min | CPU s (tool, all threads) | load avg (1 min) at start / mean / max / end | "
        "index s | calibration s | candidates s | verification s | grouping s | candidate pairs | pairs verified |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {t['images']} | {t['wall_s']} | {t['wall_s'] / 60:.1f} | {t['cpu_s']} | {t['load_start'][0]} / "
        f"{t['load_1min_mean']} / {t['load_1min_max']} / {t['load_end'][0]} | {t['index_s']} | {t['calibration_s']} | "
        f"{f.get('candidates')} | {f.get('verification')} | {f.get('grouping')} | {t['candidates']} | "
        f"{t['verified_pairs']} |", "",
        f"CPU seconds per 1,000 images: {1000 * t['cpu_s'] / t['images']:.1f} (on 2 otherwise idle cores the wall "
        f"time would be about CPU s / 2 = {t['cpu_s'] / 120:.1f} min). The tool's last line: `{t['summary']}`; "
        f"its calibration: `{t['calibration_line']}`.", ""])


def tool_main(args):
    from ppshitu.utils.cpu import describe

    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()   # the code the tool runs (taken at its start)
    folder = args.folder or tempfile.mkdtemp(prefix="dup-tool-folder-")
    try:
        t = tool_run(args.n, folder)
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    text = render_tool(t, describe(), os.cpu_count(), head)
    md, js = (os.path.join(args.out, "bench_duplicates_speed" + e) for e in (".md", ".json"))
    old = open(md, encoding="utf-8").read() if os.path.exists(md) else ""
    old = old.split(TOOL_HEADING)[0].rstrip() + "\n\n" if old.strip() else ""
    res = json.load(open(js, encoding="utf-8")) if os.path.exists(js) else {}
    res["tool"] = {**t, "cpu": describe(), "cores": os.cpu_count(), "head_rev": head}
    os.makedirs(args.out, exist_ok=True)
    with open(md, "w", encoding="utf-8") as f:
        f.write(old + text)
    with open(js, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    print(text)
    return t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="the earlier commit to compare with")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--tool", action="store_true", help="time tools/find_duplicates.py itself on --n images")
    p.add_argument("--folder", help="with --tool: the generated folder (written when empty or absent, kept)")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--side", help=argparse.SUPPRESS)   # (internal: run one side in this process)
    args = p.parse_args(argv)
    if args.side:
        return one_side(args.side, args.n)
    if args.tool:
        return tool_main(args)
    if not args.base:
        p.error("--base REV (or --tool)")
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
