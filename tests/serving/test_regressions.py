"""Each failure of the stdlib deploy/serve.py that issue 15 lists, as a test against the real service
with the real demo models. Every test here fails on that server (run with
PPSHITU_SERVE_SCRIPT=<its serve.py>): oneDNN predictors run from a new thread per request
(`RuntimeError: std::exception`, dropped requests), no timeouts, a traceback for a bad
Content-Length, decoding a decompression bomb, and a gallery frozen at start-up."""
import socket
import subprocess
import sys
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx

from serving_helpers import ROOT, bench_service, read


def _post_image(client, data):
    try:
        r = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
        return r.status_code, r
    except httpx.HTTPError as e:  # a dropped connection: what the old server did
        return 0, e


def test_sequential_requests_all_succeed(server, world):
    data = read(world["scenes"][0][0])
    with httpx.Client(base_url=server.url, timeout=30) as c:
        answers = [_post_image(c, data) for _ in range(10)]
    assert [code for code, _ in answers] == [200] * 10
    labels = {r["rec_docs"] for _, resp in answers for r in resp.json()["results"]}
    assert labels & set(world["gallery_classes"]), labels


def test_twenty_clients_ten_requests_each_all_succeed(server, world):
    views = [read(v) for vs in world["gallery_classes"].values() for v in vs]

    def client(i):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return [_post_image(c, views[(i + j) % len(views)])[0] for j in range(10)]
    with ThreadPoolExecutor(20) as pool:
        codes = [code for codes in pool.map(client, range(20)) for code in codes]
    assert len(codes) == 200 and codes.count(200) == 200, {c: codes.count(c) for c in set(codes)}


def _read_until_closed(sock, deadline):
    """(bytes the server sent, whether it closed the connection before `deadline`)."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def test_slow_clients_do_not_pin_the_server(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    stalled = []
    for i in range(20):  # slow loris: headers that never end
        s = socket.create_connection((server.host, server.port))
        s.sendall(b"GET /health HTTP/1.1\r\n" + host + b"X-Slow: ")
        stalled.append(s)
    for i in range(20):  # a body shorter than its Content-Length
        s = socket.create_connection((server.host, server.port))
        s.sendall(b"POST /predict HTTP/1.1\r\n" + host + b"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
                  + b"\xff\xd8" * 50)
        stalled.append(s)
    try:
        start = time.monotonic()
        r = httpx.get(server.url + "/health", timeout=10)
        assert r.status_code == 200 and time.monotonic() - start < 3, "other clients must be served meanwhile"
        # the server drops them itself: header timeout 2 s, body timeout 3 s (conftest.SERVER_ARGS)
        deadline = time.monotonic() + 12
        results = [_read_until_closed(s, deadline) for s in stalled]
    finally:
        for s in stalled:
            s.close()
    assert all(closed for _, closed in results), f"{sum(not c for _, c in results)} of 40 slow clients still held"
    answered = [data for data, _ in results if data]
    assert all(d.startswith(b"HTTP/1.1 408") and b'"error"' in d for d in answered), answered[:2]


def _raw(server, request, wait=10):
    s = socket.create_connection((server.host, server.port))
    try:
        s.sendall(request)
        data, _ = _read_until_closed(s, time.monotonic() + wait)
        return data
    finally:
        s.close()


def test_content_length_that_is_not_a_number_is_a_json_400(server):
    data = _raw(server, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\nxyz")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), data[:200]
    assert b"application/json" in head.lower() and b'"error"' in body and b"Traceback" not in data


def png_bomb(width=20000, height=20000, rows_per_block=100):
    """A valid PNG of width x height black pixels in ~1.2 MB (1.2 GB as RGB): deflate blocks after a
    full flush repeat byte for byte, so the stream is built without compressing 1.2 GB."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    block = b"\0" * ((1 + 3 * width) * rows_per_block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(block, adler)
    idat = b"\x78\xda" + body * (height // rows_per_block) + b"\x03\x00" + struct.pack(">I", adler)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(server):
    bomb = png_bomb()
    assert len(bomb) < 2 << 20
    with bench_service.RssSampler(server, every=0.05) as rss, httpx.Client(base_url=server.url, timeout=120) as c:
        time.sleep(0.1)
        start = time.monotonic()
        raw = c.post("/predict", content=bomb, headers={"Content-Type": "image/png"})
        multi = c.post("/predict", files={"image": ("bomb.png", bomb, "image/png")})
        elapsed = time.monotonic() - start
        time.sleep(0.1)
    before = rss.samples[0][1]
    peak = max(mb for _, mb in rss.samples)
    for r in (raw, multi):
        assert r.status_code in (400, 413), r.text[:300]
        assert "20000 x 20000" in r.json()["error"]
    assert elapsed < 5, f"refusing two bombs took {elapsed:.1f} s"
    assert peak - before < 150, f"RSS went from {before:.0f} to {peak:.0f} MB while refusing the bombs"


OTHER_PROCESS = """
import sys
import numpy as np
from ppshitu.gallery import Gallery
g = Gallery.open(sys.argv[1])
label = sys.argv[2]
if sys.argv[3] == "add":
    v = np.asarray(g.vectors[:2])
    g.add(v, label, paths=[f"elsewhere/{label}/{i}.jpg" for i in range(2)], model_fingerprint=g.model_fingerprint)
else:
    g.remove(labels=[label])
print(len(g))
"""


def _other_process(index_dir, label, op):
    proc = subprocess.run([sys.executable, "-c", OTHER_PROCESS, index_dir, label, op], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_gallery_updates_by_another_process_are_served_without_restart(server, world):
    scene = read(world["scenes"][0][0])
    with httpx.Client(base_url=server.url, timeout=30) as c:
        start = c.get("/health").json()
        count = start["gallery_size"]
        labels = start["labels"]
        try:
            for n, label in enumerate(("appended elsewhere 1", "appended elsewhere 2"), 1):
                assert _other_process(world["index_dir"], label, "add") == count + 2 * n
                health = c.get("/health").json()
                assert health["gallery_size"] == count + 2 * n, "the service still answers from the old version"
                assert health["labels"] == labels + n
                answer = c.post("/predict", content=scene, headers={"Content-Type": "image/jpeg"})
                assert answer.status_code == 200
            # two versions later the first one is garbage-collected: answers come from the newest
            assert answer.json().get("gallery", {}).get("version") == health.get("version")
        finally:
            for label in ("appended elsewhere 1", "appended elsewhere 2"):
                _other_process(world["index_dir"], label, "remove")
        assert c.get("/health").json()["gallery_size"] == count
