"""Serve a started Service with uvicorn: one process, one event loop, the guards of protocol.py.

    serve(service)           # blocks until SIGINT/SIGTERM; prints "serving on http://HOST:PORT" once listening
"""
import logging
import socket
import sys

import uvicorn

from .app import create_app
from .protocol import make_protocol

log = logging.getLogger("ppshitu.serving")


def bind(host, port, backlog=256):
    """A listening socket (port 0: any free port), IPv4 or IPv6 as `host` says."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        from ..errors import PPShiTuError
        raise PPShiTuError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app, settings):
    return uvicorn.Config(
        app, http=make_protocol(settings), ws="none", lifespan="off", loop="asyncio", interface="asgi3",
        limit_concurrency=None,  # protocol.py caps connections itself, answering in JSON
        timeout_keep_alive=settings.keep_alive, h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=5, server_header=False, access_log=settings.access_log,
        log_level=settings.log_level)


def serve(service, on_listening=None):
    """Run until interrupted, then stop the service's threads."""
    settings = service.settings
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn_config(create_app(service), settings))
    writes = "writes need the token" if settings.writes_enabled else "read-only (no token: writes answer 403)"
    print(f"serving on http://{shown}:{port} (page /, API /docs; {writes})", flush=True)
    if on_listening:
        on_listening(port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        service.stop()
    return 0


def serve_in_thread(service):
    """Start serving on a background thread (tests, benchmarks): (url, stop())."""
    import threading

    settings = service.settings
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(create_app(service), settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}", stop


if __name__ == "__main__":  # pragma: no cover - use deploy/serve.py
    sys.exit("run deploy/serve.py -c configs/inference/inference_general.yaml")
