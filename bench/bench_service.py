"""Load test of the recognition service (deploy/serve.py) on loopback, with the real demo models.

    .venv/bin/python bench/bench_service.py                 # 8 clients x 30 s, then saturation; ~1.5 min
    .venv/bin/python bench/bench_service.py --quick         # 4 clients x 8 s
    .venv/bin/python bench/bench_service.py --clients 16 --seconds 60 --saturate 120

1. builds a small world (generated objects and scenes, a gallery of 5 classes from models/demo)
   in a temporary folder, and starts `deploy/serve.py` on 127.0.0.1 (any free port) with a token;
2. load: N clients (keep-alive connections, one thread each) for M seconds, a mix of
   POST /predict (scenes), POST /search (object views) and POST /api/items (a new generated image
   each time, so the gallery grows and publishes a new version per append); every answer must be
   2xx: any other status or a failed connection is an error;
3. the server's RSS is sampled every 0.25 s: after the warm-up it must stay within --rss-bound MB
   of where it started (flat: no growth per request);
4. saturation: --saturate clients fire predictions back to back, more than the queue holds: the
   server must answer only 200 or 503 (with Retry-After), never queue without bound, and the
   accepted requests' latency stays bounded by the queue length;
5. a screenshot of the page with a recognised scene (headless Chromium, when installed).

Prints a table and saves it to bench/results/bench_service.md (--out; nothing saved with --no-save).
Exits non-zero when any check fails. Loopback only, bounded in requests, time and clients.
"""
import argparse
import http.client
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ROOT / "models" / "demo"
GALLERY_CLASSES = [40, 41, 42, 43, 44]   # in the gallery from the start
GALLERY_VIEWS = 3                        # of each gallery class
SCENE_SIZE, SCENE_OBJECTS = (240, 320), (1, 3)
VIEW_SIZE = 96                           # object views: searched, and appended through the API
SERVER_THREADS = 2                       # Global.cpu_num_threads of the server's predictors
MIX = (0.6, 0.25, 0.15)                  # shares of POST /predict, POST /search, POST /api/items under load
EXTRA_CLASSES = [45, 46, 47, 48, 49]     # never trained on, not in the gallery: added through the API
MAX_CLIENTS, MAX_SECONDS = 256, 600      # the bench refuses to run wider or longer
RESULTS = ROOT / "bench" / "results"


# ----------------------------------------------------------------------------- world
def build_world(root, scenes=8, seed=0):
    """Generated images + a gallery built by tools/build_gallery.py (in a child process, so the caller
    never loads Paddle). Returns a dict describing it."""
    from dataset.synthetic import class_name, make_recognition_set, make_scenes

    root = Path(root)
    make_recognition_set(root / "rec", num_classes=50, views_per_class=4, image_size=VIEW_SIZE,
                         num_train_classes=40, gallery_views=GALLERY_VIEWS, seed=seed)
    make_scenes(root / "scenes", num_images=scenes, image_size=SCENE_SIZE, objects_per_image=SCENE_OBJECTS,
                object_classes=GALLERY_CLASSES, seed=3, split="val")
    names = {class_name(c) for c in GALLERY_CLASSES}
    lines = [ln for ln in (root / "rec" / "gallery_list.txt").read_text().splitlines() if ln.split("\t")[1] in names]
    (root / "gallery.txt").write_text("\n".join(lines) + "\n")
    overrides = [f"Global.rec_inference_model_dir={MODELS / 'rec'}", f"Global.det_inference_model_dir={MODELS / 'det'}",
                 f"IndexProcess.index_dir={root / 'index'}", f"IndexProcess.image_root={root / 'rec'}",
                 "IndexProcess.use_det=True", "IndexProcess.index_method=Flat",
                 f"Global.cpu_num_threads={SERVER_THREADS}"]
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_gallery.py"), "-c", str(CONFIG),
                           *sum((["-o", o] for o in overrides + ["IndexProcess.index_operation=new",
                                                                 f"IndexProcess.data_file={root / 'gallery.txt'}"]),
                                [])], capture_output=True, text=True, cwd=ROOT, env=_env())
    if proc.returncode:
        raise RuntimeError(f"build_gallery failed:\n{proc.stderr[-3000:]}")
    scenes_json = json.loads((root / "scenes" / "val.json").read_text())
    by_image = {}
    for ann in scenes_json["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["object_name"])
    scene_list = [(str(root / "scenes" / "images" / im["file_name"]), sorted(set(by_image.get(im["id"], []))))
                  for im in scenes_json["images"]]

    def views(c):
        return [str(root / "rec" / "images" / f"class_{c:04d}" / f"{v:03d}.jpg") for v in range(4)]
    return {"root": str(root), "config": str(CONFIG), "overrides": overrides, "index_dir": str(root / "index"),
            "scenes": scene_list, "gallery_classes": {class_name(c): views(c) for c in GALLERY_CLASSES},
            "extra_classes": {class_name(c): views(c) for c in EXTRA_CLASSES}}


CONFIG = ROOT / "configs" / "inference" / "inference_general.yaml"


def _env(threads=2):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ----------------------------------------------------------------------------- the server
class ServerProcess:
    """deploy/serve.py (or `script`, e.g. an older server to compare) in a child process."""

    def __init__(self, world, token=None, args=(), script=None, timeout=180):
        self.token = token
        cmd = [sys.executable, script or str(ROOT / "deploy" / "serve.py"), "-c", world["config"],
               *sum((["-o", o] for o in world["overrides"]), []), "--host", "127.0.0.1", "--port", "0"]
        if script is None:  # another script (an older server) gets only what every version took
            cmd += list(args) + (["--token", token] if token else [])
        env = _env()
        env.pop("PPSHITU_TOKEN", None)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ppshitu-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=ROOT, env=env)
        self.pid = self.proc.pid
        self.url = self._wait_for_url(timeout)
        host, port = re.match(r"http://([^:/]+):(\d+)", self.url).groups()
        self.host, self.port = host, int(port)

    def _wait_for_url(self, timeout):
        found = []

        def read():
            for line in self.proc.stdout:
                m = re.search(r"serving on (http://\S+)", line)
                if m:
                    found.append(m.group(1))
                    break
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if not found:
            self.stop()
            raise RuntimeError(f"the server did not start within {timeout} s:\n{self.stderr()[-3000:]}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # keep draining
        return found[0]

    def stderr(self):
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def rss_mb(self):
        import psutil
        try:
            return psutil.Process(self.pid).memory_info().rss / 2 ** 20
        except psutil.Error:
            return float("nan")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


# ----------------------------------------------------------------------------- HTTP
def multipart(fields=(), files=()):
    """(body, content type) for text `fields` [(name, value)] and `files` [(name, filename, bytes)]."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f'Content-Type: application/octet-stream\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection; reconnects after the server closes it."""

    def __init__(self, host, port, timeout=60):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict, body bytes, seconds); status 0 when the connection failed."""
        headers = dict(headers or {})
        start = time.perf_counter()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.perf_counter() - start
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # a keep-alive connection the server had closed (idle timeout): one fresh try
                self.close()
                if attempt:
                    return 0, {}, repr(e).encode(), time.perf_counter() - start
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return 0, {}, repr(e).encode(), time.perf_counter() - start
        return 0, {}, b"", time.perf_counter() - start

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def new_object_jpeg(class_id, seed):
    """A new view of a generated class (distinct bytes each seed: appends never repeat)."""
    import cv2
    import numpy as np

    from dataset.synthetic import render_view

    rgb = render_view(class_id, np.random.default_rng([seed, class_id, 7]), 96)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return buf.tobytes()


# ----------------------------------------------------------------------------- load
def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))]


class RssSampler:
    def __init__(self, server, every=0.25):
        self.server, self.every, self.samples = server, every, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.server.rss_mb()))
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_load(server, world, clients=8, seconds=30.0, mix=MIX, label_prefix="bench appended",
             seed=0, warmup_fraction=0.2):
    """N clients for M seconds; returns stats (per operation latencies, errors, RSS samples)."""
    clients, seconds = min(int(clients), MAX_CLIENTS), min(float(seconds), MAX_SECONDS)
    scenes = [read_bytes(p) for p, _ in world["scenes"]]
    views = [read_bytes(p) for vs in world["gallery_classes"].values() for p in vs]
    extra_ids = [int(re.search(r"(\d+)$", name).group(1)) for name in world["extra_classes"]]
    auth = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    lat = {"predict": [], "search": [], "append": []}
    errors, lock = [], threading.Lock()
    appended_labels = set()
    deadline = time.monotonic() + seconds
    counter = iter(range(10 ** 9))

    def worker(i):
        rng = random.Random(seed * 1000 + i)
        c = Client(server.host, server.port)
        while time.monotonic() < deadline:
            x = rng.random()
            if x < mix[0]:
                op, status, _, body, dt = "predict", *c.request("POST", "/predict", rng.choice(scenes),
                                                                    {"Content-Type": "image/jpeg"})
            elif x < mix[0] + mix[1]:
                op, status, _, body, dt = "search", *c.request("POST", "/search?k=5", rng.choice(views),
                                                                   {"Content-Type": "image/jpeg"})
            else:
                with lock:
                    n = next(counter)
                cls = extra_ids[n % len(extra_ids)]
                label = f"{label_prefix} {cls}"
                data, ctype = multipart([("label", label)], [("images", f"view{n}.jpg",
                                                              new_object_jpeg(cls, seed * 10 ** 6 + n))])
                op, status, _, body, dt = "append", *c.request("POST", "/api/items", data,
                                                                   {"Content-Type": ctype, **auth})
                with lock:
                    appended_labels.add(label)
            with lock:
                if 200 <= status < 300:
                    lat[op].append(dt)
                else:
                    errors.append({"op": op, "status": status, "body": body[:300].decode("utf-8", "replace")})
        c.close()

    started = time.monotonic()
    with RssSampler(server) as rss:
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
    wall = time.monotonic() - started
    samples = [mb for t, mb in rss.samples]
    cut = max(1, int(len(samples) * warmup_fraction))
    return {"clients": clients, "seconds": round(wall, 1), "latency": lat, "errors": errors,
            "requests": sum(len(v) for v in lat.values()) + len(errors),
            "rss_start_mb": max(samples[:cut]) if samples else float("nan"),
            "rss_peak_mb": max(samples) if samples else float("nan"),
            "rss_end_mb": samples[-1] if samples else float("nan"),
            "appended_labels": sorted(appended_labels)}


def saturate(server, image, clients=96, seconds=5.0):
    """More concurrent clients than the queue holds, back to back: statuses and accepted latencies."""
    clients, seconds = min(int(clients), MAX_CLIENTS), min(float(seconds), MAX_SECONDS)
    statuses, lat_ok, missing_retry, bad = {}, [], 0, []
    lock = threading.Lock()
    deadline = [None]
    barrier = threading.Barrier(clients, action=lambda: deadline.__setitem__(0, time.monotonic() + seconds))

    def worker():
        nonlocal missing_retry
        c = Client(server.host, server.port)
        barrier.wait()
        while time.monotonic() < deadline[0]:
            status, hdrs, body, dt = c.request("POST", "/predict", image, {"Content-Type": "image/jpeg"})
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    lat_ok.append(dt)
                elif status == 503:
                    if "retry-after" not in hdrs:
                        missing_retry += 1
                    try:
                        json.loads(body)
                    except ValueError:
                        bad.append(body[:200])
                else:
                    bad.append(body[:200])
            if status == 503:
                time.sleep(0.05)
        c.close()

    with RssSampler(server) as rss:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
    return {"clients": clients, "seconds": seconds, "statuses": statuses, "latency_ok": lat_ok,
            "missing_retry_after": missing_retry, "bad": bad,
            "rss_peak_mb": max((mb for _, mb in rss.samples), default=float("nan"))}


def cleanup(server, labels):
    c = Client(server.host, server.port)
    for label in labels:
        from urllib.parse import quote
        c.request("DELETE", "/api/labels/" + quote(label, safe=""), headers={"Authorization": f"Bearer {server.token}"})
    c.close()


# ----------------------------------------------------------------------------- the page
def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(server, world, out):
    """The page after recognising a scene and searching an object view; returns the path or None."""
    chromium = find_chromium()
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    scene = world["scenes"][0][0]
    view = next(iter(world["gallery_classes"].values()))[3]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready='1']")
            page.set_input_files("#predict-input", scene)
            page.wait_for_selector("#predict-results .result-label")
            page.set_input_files("#search-input", view)
            page.wait_for_selector("#search-results .tile")
            page.click(".label-row .show-label")
            page.wait_for_selector("#items .tile img")
            page.wait_for_timeout(300)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return str(out)


# ----------------------------------------------------------------------------- report
def summarize(load, sat, queue_capacity, rss_bound):
    lines, ok = [], True
    all_lat = [x for v in load["latency"].values() for x in v]
    rate = len(all_lat) / load["seconds"] if load["seconds"] else 0
    lines.append("| phase | requests | req/s | p50 ms | p99 ms | errors |")
    lines.append("|---|---|---|---|---|---|")
    for op, v in load["latency"].items():
        lines.append(f"| load: {op} | {len(v)} | {len(v) / load['seconds']:.1f} | {percentile(v, 50) * 1000:.0f} | "
                     f"{percentile(v, 99) * 1000:.0f} | {sum(e['op'] == op for e in load['errors'])} |")
    lines.append(f"| load: all ({load['clients']} clients, {load['seconds']} s) | {len(all_lat)} | {rate:.1f} | "
                 f"{percentile(all_lat, 50) * 1000:.0f} | {percentile(all_lat, 99) * 1000:.0f} | "
                 f"{len(load['errors'])} |")
    if sat:
        n503 = sat["statuses"].get(503, 0)
        n200 = sat["statuses"].get(200, 0)
        others = {k: v for k, v in sat["statuses"].items() if k not in (200, 503)}
        lines.append(f"| saturation ({sat['clients']} clients, {sat['seconds']} s) | {sum(sat['statuses'].values())} | "
                     f"{n200 / sat['seconds']:.1f} ok | {percentile(sat['latency_ok'], 50) * 1000:.0f} | "
                     f"{percentile(sat['latency_ok'], 99) * 1000:.0f} | 503: {n503}, other: {sum(others.values())} |")
    growth = load["rss_peak_mb"] - load["rss_start_mb"]
    lines.append("")
    lines.append(f"Server RSS: {load['rss_start_mb']:.0f} MB after warm-up, peak {load['rss_peak_mb']:.0f} MB, "
                 f"end {load['rss_end_mb']:.0f} MB (growth {growth:+.0f} MB; bound {rss_bound} MB)"
                 + (f"; peak under saturation {sat['rss_peak_mb']:.0f} MB" if sat else "") + ".")
    checks = []
    checks.append(("zero errors under load", not load["errors"]))
    checks.append((f"RSS flat (growth <= {rss_bound} MB)", growth <= rss_bound))
    if sat:
        checks.append(("saturated: some requests answered 503", sat["statuses"].get(503, 0) > 0))
        checks.append(("saturated: only 200 or 503, JSON, with Retry-After",
                       not sat["bad"] and not sat["missing_retry_after"]
                       and set(sat["statuses"]) <= {200, 503}))
        checks.append((f"saturated: RSS within {rss_bound} MB of the start",
                       sat["rss_peak_mb"] - load["rss_start_mb"] <= rss_bound))
    lines.append("")
    for name, passed in checks:
        lines.append(f"- {'PASS' if passed else 'FAIL'}: {name}")
        ok &= passed
    if load["errors"]:
        lines.append("")
        lines.append("Errors (first 5): " + "; ".join(f"{e['op']} {e['status']} {e['body'][:120]}"
                                                       for e in load["errors"][:5]))
    return "\n".join(lines), ok


def setup_text(machine, workers, queue, load):
    """What ran, from this run's settings and counts (the mix is the one the clients drew, not only the target)."""
    counts = {op: len(v) + sum(e["op"] == op for e in load["errors"]) for op, v in load["latency"].items()}
    total = sum(counts.values()) or 1
    drawn = ", ".join(f"{counts.get(op, 0) / total:.0%} {what} (target {share:.0%})" for op, what, share in (
        ("predict", f"POST /predict ({SCENE_SIZE[1]}x{SCENE_SIZE[0]} scenes, {SCENE_OBJECTS[0]}-{SCENE_OBJECTS[1]} "
                    f"objects)", MIX[0]),
        ("search", f"POST /search ({VIEW_SIZE} px object views)", MIX[1]),
        ("append", "POST /api/items (one new generated image each: a new gallery version)", MIX[2])))
    return (f"Machine: {machine}. Models: models/demo (PicoDet det + EfficientNet-Lite0 rec, CPU, {SERVER_THREADS} "
            f"threads), {workers} inference worker{'s' if workers != 1 else ''}, queue {queue}; gallery of "
            f"{len(GALLERY_CLASSES)} classes x {GALLERY_VIEWS} views, plus {len(load['latency'].get('append', []))} "
            f"image(s) appended during the load. Mix drawn: {drawn}.")


def machine_line():
    import platform

    import psutil
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores "
            f"(load average {os.getloadavg()[0]:.1f} at the start), Python {platform.python_version()}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--saturate", type=int, default=96, help="clients in the saturation phase (0: skip it)")
    ap.add_argument("--saturate-seconds", type=float, default=6.0)
    ap.add_argument("--queue", type=int, default=32, help="the server's --queue")
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (inference threads)")
    ap.add_argument("--rss-bound", type=float, default=150.0, help="MB the server's RSS may grow by")
    ap.add_argument("--quick", action="store_true", help="4 clients x 8 s, saturation 48 clients x 3 s")
    ap.add_argument("--out", default=str(RESULTS / "bench_service.md"))
    ap.add_argument("--screenshot", default=str(RESULTS / "service_page.png"),
                    help="where to save the page's screenshot ('' : none)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.saturate, args.saturate_seconds = 4, 8.0, 48, 3.0
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS or args.saturate > MAX_CLIENTS:
        ap.error(f"at most {MAX_CLIENTS} clients and {MAX_SECONDS} s")
    machine = machine_line()
    tmp = Path(tempfile.mkdtemp(prefix="ppshitu-bench-service-"))
    server = None
    try:
        print("building the world (generated images, a gallery from models/demo) ...", flush=True)
        world = build_world(tmp / "world")
        server = ServerProcess(world, token=uuid.uuid4().hex,
                               args=["--queue", str(args.queue), "--workers", str(args.workers)])
        print(f"server {server.url} (pid {server.pid}); warming up ...", flush=True)
        warm = Client(server.host, server.port)
        for path, _ in world["scenes"][:4]:
            warm.request("POST", "/predict", read_bytes(path), {"Content-Type": "image/jpeg"})
        warm.close()
        print(f"load: {args.clients} clients x {args.seconds:g} s ...", flush=True)
        load = run_load(server, world, args.clients, args.seconds)
        sat = None
        if args.saturate:
            print(f"saturation: {args.saturate} clients x {args.saturate_seconds:g} s ...", flush=True)
            sat = saturate(server, read_bytes(world["scenes"][0][0]), args.saturate, args.saturate_seconds)
        shot = None
        if args.screenshot:
            shot = screenshot(server, world, Path(tempfile.gettempdir()) / "ppshitu_service_page.png")
            if shot and not args.no_save:
                shutil.copyfile(shot, args.screenshot)
                shot = os.path.relpath(args.screenshot, ROOT)
        table, ok = summarize(load, sat, args.queue, args.rss_bound)
        if not server.alive():
            ok = False
            table += "\n- FAIL: the server died"
        text = (f"# bench_service: deploy/serve.py under load (loopback)\n\n"
                f"`python bench/bench_service.py{''.join(' ' + a for a in (argv if argv is not None else sys.argv[1:]))}`"
                f" ({time.strftime('%Y-%m-%d')})\n\n"
                f"{setup_text(machine, args.workers, args.queue, load)}\n\n"
                f"{table}\n" + (f"\nScreenshot: `{shot}`\n" if shot else ""))
        print("\n" + text)
        if not args.no_save:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            print(f"saved {args.out}")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
