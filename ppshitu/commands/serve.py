"""Serve recognition and gallery management over HTTP (FastAPI on uvicorn) with a web page.

    python deploy/serve.py -c configs/inference/inference_general.yaml [--host 127.0.0.1 --port 8866]
                           [--token T] [-o Section.key=value ...]

    page        http://127.0.0.1:8866/          drop a photo, browse / add / delete classes, search
    API         http://127.0.0.1:8866/docs      POST /predict, POST /search, GET /health, /api/...

Binds loopback by default. Reads are open; writes (adding, deleting, renaming classes and items)
need `Authorization: Bearer <token>`, the token given by --token or the PPSHITU_TOKEN environment
variable; without one, the write routes answer 403. The gallery is IndexProcess's (built by
tools/build_gallery.py): `index_dir` (FAISS), or with `backend: milvus` a Milvus Lite file or server
(`uri`, `collection`; a server needs --upload-dir); updates published by any process are picked up
without a restart.
Limits (body size, pixels, queue, timeouts, connections) are flags below; ppshitu/serving/settings.py
says what each one bounds.
"""
import sys

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.schemas import INFER_SCHEMA, MAX_THREADS

MiB = 1 << 20


def parse_args(argv=None):
    from ppshitu.serving.settings import Settings

    d = Settings.__dataclass_fields__
    parser = config_parser(__doc__.splitlines()[0])
    a = parser.add_argument
    a("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    a("--port", type=int, default=8866, help="port (0: any free port, printed at start)")
    a("--token", default=None, help="bearer token for the write routes (default: $PPSHITU_TOKEN; none: read-only)")
    a("--workers", type=int, default=d["workers"].default, help="inference threads, each with its own predictors")
    a("--queue", type=int, default=d["queue"].default, help="inference jobs waiting at most; beyond: 503")
    a("--queue-timeout", type=float, default=d["queue_timeout"].default, help="seconds a job may wait: then 503")
    a("--max-body-mb", type=float, default=d["max_body"].default / MiB, help="request body limit (413 beyond)")
    a("--max-pixels", type=int, default=None,
      help="pixels per image, checked before decoding (default: Global.max_image_pixels, else 40 MP)")
    a("--max-files", type=int, default=d["max_files"].default, help="images per POST /api/items")
    a("--header-timeout", type=float, default=d["header_timeout"].default,
      help="seconds to send request line + headers")
    a("--read-timeout", type=float, default=d["read_timeout"].default, help="seconds to send a request body")
    a("--keep-alive", type=float, default=d["keep_alive"].default, help="seconds an idle connection stays open")
    a("--max-connections", type=int, default=d["max_connections"].default,
      help="open connections at most; beyond: 503")
    a("--allowed-host", action="append", default=None, metavar="NAME",
      help="a Host header name to answer (repeatable; default on loopback: localhost, 127.0.0.1, ::1)")
    a("--upload-dir", default=None, help="where images added through the API are kept (default: INDEX_DIR/uploads; "
                                         "Milvus Lite: URI.uploads/COLLECTION; required for a Milvus server). A given "
                                         "folder may be shared by several services: each gallery keeps its uploads "
                                         "in its own subfolder gallery-<16 hex>, named in its GALLERY file")
    a("--access-log", action="store_true", help="log every request")
    a("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    check_flags(args)
    return args


# each numeric flag's range: (flag, low, high, what); every float must also be finite
FLAG_RANGES = (("port", 0, 65535, "a TCP port; 0: any free port"), ("workers", 1, MAX_THREADS, "threads"),
               ("queue", 1, None, "jobs"), ("queue_timeout", 0, None, "seconds"),
               ("max_body_mb", 0, 1 << 20, "MiB"), ("max_pixels", 1, None, "pixels"), ("max_files", 1, None, "images"),
               ("header_timeout", 0, None, "seconds"), ("read_timeout", 0, None, "seconds"),
               ("keep_alive", 0, None, "seconds"), ("max_connections", 1, None, "connections"))
EXCLUSIVE_LOW = {"queue_timeout", "max_body_mb", "header_timeout", "read_timeout", "keep_alive"}  # > low


def check_flags(args):
    """Every numeric flag within its range (a finite float), else one line naming the flag."""
    import math

    from ppshitu.errors import PPShiTuError

    for name, low, high, unit in FLAG_RANGES:
        value = getattr(args, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        exclusive = name in EXCLUSIVE_LOW
        if exclusive:
            wanted = f"> {low}" + (f" and <= {high}" if high is not None else "")
        else:
            wanted = f"from {low} to {high}" if high is not None else f">= {low}"
        if isinstance(value, float):
            wanted = "a finite number " + wanted
        if (isinstance(value, float) and not math.isfinite(value)) or (value <= low if exclusive else value < low) \
                or (high is not None and value > high):
            raise PPShiTuError(f"{flag} must be {wanted} ({unit}), got {value!r}")


def main(argv=None):
    import logging

    args = parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from ppshitu.serving import Service, Settings, serve
    from ppshitu.serving.settings import is_loopback

    try:
        settings = Settings(host=args.host, port=args.port, token=args.token, workers=args.workers, queue=args.queue,
                            queue_timeout=args.queue_timeout, max_body=int(args.max_body_mb * MiB),
                            max_pixels=args.max_pixels, max_files=args.max_files, header_timeout=args.header_timeout,
                            read_timeout=args.read_timeout, keep_alive=args.keep_alive,
                            max_connections=args.max_connections, upload_dir=args.upload_dir,
                            access_log=args.access_log, log_level=args.log_level,
                            allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None)
    except ValueError as e:
        from ppshitu.errors import PPShiTuError
        raise PPShiTuError(str(e)) from None
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: the gallery's labels and images can be read by anyone who can "
              f"reach it" + ("" if settings.writes_enabled else "; writes stay disabled (no token)"), file=sys.stderr)
    service = Service.from_config(cfg, settings).start()
    return serve(service)


def cli(argv=None):
    """`ppshitu serve ARGS`, as `python deploy/serve.py ARGS` runs: an expected error is one line, exit status 2;
    otherwise the exit status main() returns."""
    sys.exit(run_main(lambda: main(argv)))
