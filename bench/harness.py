"""What every benchmark stage shares: timing, the one-process-per-stage protocol, machine facts.

A stage runs in its own Python process (`python bench/stages.py NAME JSON_ARGS`), so its
peak resident memory is its own and one pipeline's warm caches cannot help the other.
The child prints one line `BENCH_RESULT {json}` last; `run_stage` parses it.
"""
import json
from importlib import metadata
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULT_TAG = "BENCH_RESULT "
if str(ROOT) not in sys.path:  # bench scripts run as `python bench/x.py`: make `ppshitu` importable
    sys.path.insert(0, str(ROOT))

from ppshitu.utils.cpu import KEY_FLAGS, cpu_info, describe  # noqa: E402


class StageError(RuntimeError):
    pass


def peak_rss_mb(pid="self"):
    """A process's peak resident set in MB: VmHWM, the high-water mark of its own address space. Not
    ru_maxrss: Linux carries a forked child's high-water mark across exec, so a stage started by a parent
    holding 1 GB (run_all after quantizing in-process) would report at least that 1 GB. None once gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if pid == "self":  # no /proc
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return None


def timed(fn, min_seconds, min_iters=2, warmup=1):
    """Mean seconds per call of fn(), after `warmup` calls, over at least `min_iters` calls
    and `min_seconds` of wall time."""
    for _ in range(warmup):
        fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if n >= min_iters and elapsed >= min_seconds:
            return elapsed / n


def best_of(results):
    """Merge repeated runs of one stage: per number, the best round (highest rate, lowest
    time or latency); peak RSS is the highest seen; anything else is the first run's."""
    first = results[0]
    if isinstance(first, dict):
        return {k: _best_value(k, [r[k] for r in results if isinstance(r, dict) and k in r]) for k in first}
    return first


def _best_value(key, values):
    if isinstance(values[0], dict):
        return best_of(values)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return values[0]
    if key.endswith("per_s") or key.startswith("bs") or key in ("qps", "peak_rss_mb"):
        return max(values)
    if key.startswith("ms_") or key.endswith("seconds") or key.endswith("_s"):
        return min(values)
    return values[0]


def emit(result):
    """The child's last line: its metrics plus its peak RSS."""
    result = dict(result, peak_rss_mb=round(peak_rss_mb(), 1))
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_stage(name, args, timeout=600, env=None):
    """Run one stage in a fresh process; its metrics dict, or StageError with its stderr tail."""
    cmd = [sys.executable, str(BENCH / "stages.py"), name, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    raise StageError(f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}")


def run_process(cmd, timeout=1800, env=None):
    """Wall-clock seconds and peak RSS (MB) of one whole process, start-up included, as a user times a
    tool. The peak is the child's VmHWM (see peak_rss_mb), read every 20 ms while it runs: what grows in
    its last 20 ms is missed. Output goes to temporary files, not pipes, so a chatty child never blocks.
    StageError with the stderr tail if it fails or runs past `timeout`."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, cwd=ROOT,
                                env=dict(os.environ, **(env or {})))
        peak = 0.0
        while True:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() - start > timeout:
                    proc.kill()
                    proc.wait()
                    break
        seconds = time.perf_counter() - start
        err.seek(0)
        out.seek(0)
        if proc.returncode != 0:
            lines = (err.read() or out.read()).strip().splitlines()
            why = f"killed after {timeout} s" if seconds > timeout else f"exit {proc.returncode}"
            raise StageError(f"{why}: {lines[-1] if lines else 'no output'}")
        # (Global.precision's choice per model, printed once to stderr: ppshitu/infer/precision.py announce)
        chosen = [line for line in err.read().splitlines() if line.startswith("precision ")]
        return {"seconds": seconds, "peak_rss_mb": round(peak, 1), "stdout_tail": out.read()[-300:],
                "precision_choices": chosen}


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # a missing package is a fact to record, not a failure
        return "not installed"


def fp32_peak(cpu=None):
    """(FLOP per cycle per core, GHz, how) of this CPU's fp32 FMA peak, from its vendor and flags.

    The clock is the one /proc/cpuinfo reports (in a VM often the base clock: turbo may
    run higher), so the measured sgemm next to it is the attainable figure to trust."""
    cpu = cpu or cpu_info()
    flags = set(cpu.get("flags", "").split())
    vendor, family = cpu.get("vendor_id", ""), int(cpu.get("cpu family", 0) or 0)
    if "avx512f" in flags and not (vendor == "AuthenticAMD" and family < 26):
        per_cycle, how = 64, "2 AVX-512 FMA pipes x 16 lanes x 2"
    elif "avx512f" in flags:  # Zen 4 splits a 512-bit FMA into two 256-bit halves
        per_cycle, how = 32, "AVX-512 as 2 x 256-bit FMA pipes x 8 lanes x 2 (Zen 4)"
    elif "fma" in flags:
        per_cycle, how = 32, "2 AVX2 FMA pipes x 8 lanes x 2"
    else:
        per_cycle, how = 8, "SSE: 4 lanes x 2 ops"
    ghz = float(cpu.get("cpu MHz", 0) or 0) / 1000 or 1.0
    return per_cycle, ghz, f"{per_cycle} fp32 FLOP/cycle ({how}) x {ghz:.2f} GHz as /proc/cpuinfo reports"


def precision_peak_factor(precision, cpu=None):
    """(times the fp32 FMA peak, how) for the precision a model runs in, from the CPU's flags: bf16 dot
    products (avx512_bf16 VDPBF16PS: two bf16 products per fp32 lane) double it, int8 (VNNI VPDPBUSD:
    four int8 products per lane) quadruples it; AMX tiles (amx_bf16 / amx_int8) give 16x / 32x per core."""
    flags = set((cpu or cpu_info()).get("flags", "").split())
    if precision == "bf16":
        if "amx_bf16" in flags:
            return 16, "AMX bf16 tiles: 1024 FLOP/cycle/core"
        if "avx512_bf16" in flags:
            return 2, "avx512_bf16 dot products: 2x fp32"
    if precision == "int8":
        if "amx_int8" in flags:
            return 32, "AMX int8 tiles: 2048 op/cycle/core"
        if "avx512_vnni" in flags or "avx_vnni" in flags:
            return 4, "VNNI int8 dot products: 4x fp32"
    return 1, "fp32 FMA"


def machine_info():
    """CPU, core count, load and package versions, saved with every result."""
    cpu = cpu_info()
    flags = cpu.get("flags", "").split()
    return {
        "cpu": cpu.get("model name", platform.processor()),
        "cpu_family_model": f"{cpu.get('cpu family')}/{cpu.get('model')}",
        "cpu_mhz_reported": float(cpu.get("cpu MHz", 0) or 0),
        "cores": os.cpu_count(),
        "cpu_line": describe(),
        **{flag: flag in flags for flag in KEY_FLAGS},
        "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "packages": {d: _version(d) for d in ("paddlepaddle", "paddleclas", "paddledet", "faiss-cpu", "numpy",
                                              "opencv-python-headless")},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
