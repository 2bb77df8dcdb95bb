"""The HTTP API and the page, on FastAPI. `create_app(service)` -> an ASGI app.

    GET    /                               the web page (plain HTML + JS, ppshitu/serving/static/)
    GET    /health                         gallery version, count, labels, model fingerprint, queue
    POST   /predict[?draw=1&format=jpeg|png]   image -> boxes, labels, scores (+ top-k gallery ids);
                                           draw=1: the image with the boxes drawn instead
    POST   /search[?k=5&whole=0]           image -> its main object's top-k gallery items (ids, thumbnails)
    GET    /api/labels                     classes with their item counts
    GET    /api/items[?label=&offset=&limit=]  gallery items (ids, labels, thumbnails), paged
    GET    /api/items/{id}                 one item
    GET    /api/items/{id}/thumbnail[?size=160&crop=0]  JPEG, by id only
    POST   /api/items                      multipart `label` + `images` (or a raw image body + ?label=):
                                           all embedded, then appended in one gallery update (FAISS:
                                           atomic, all or none; Milvus: idempotent by path); duplicates
                                           reported
    DELETE /api/items/{id}                 remove one item
    DELETE /api/labels/{label}             remove a class
    PATCH  /api/labels/{label}             rename a class: JSON {"label": "new name"} [?merge=1]
    POST   /api/compact                    rebuild the index without removed items
    GET    /api/gallery/doctor[?k=3]       the gallery doctor: per-label recall, suspected mislabels, ...
                                           (stored vectors, cached per gallery version); GET /doctor: its page
    GET    /docs, /openapi.json            the API described (FastAPI; every request and answer's shape)

The layers: routers/ (one APIRouter per resource: read the request, call the service, answer in
its models.py shape), dependencies.py (auth and queue room, checked before a body is read),
bodies.py (request bodies within the limits), service.py (what a request does, and the threads that
own models and gallery), errors.py (the one JSON shape of refusals).

An image is a multipart field `image` or the raw request body. Every refusal is JSON
{"error": ..., "status": ...}: 400 bad input, 401/403 writes without the token / without one
configured, 404, 408 too slow, 409 conflict, 413 too large (body or pixels, refused before
decoding), 503 + Retry-After when the queue is full, 507 when the server's disk is full (nothing
changed). No traceback ever reaches a client.
"""
import errno
import logging
import uuid

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import PPShiTuError
from ..gallery import GalleryError
from ..gallery.errors import GalleryWriteError
from ..utils.image import ImageReadError, ImageTooLargeError
from .bodies import BodyReader
from .errors import ServiceError, error_response, raw_error
from .routers import ROUTERS
from .routers.page import load_page
from .workers import Busy

log = logging.getLogger("ppshitu.serving")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # 507 Insufficient Storage


def create_app(service):
    """The ASGI app for a started Service: the routers, the error handlers, and the Guard around them."""
    app = FastAPI(title="ppshitu recognition service",
                  description="Open-set recognition by retrieval: detector -> embeddings -> gallery. "
                              "Writes (POST/DELETE/PATCH under /api) need Authorization: Bearer <token>.",
                  version="1.0")
    app.state.service = service
    app.state.bodies = BodyReader(service.settings)
    app.state.page = load_page()
    for exc, handler in ERROR_HANDLERS:
        app.add_exception_handler(exc, handler)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)
    return Guard(app, service.settings.allowed_hosts, service.settings.max_header_bytes)


def _openapi(app):
    """FastAPI's description of the app less its 422 answers: this service answers a bad parameter 400,
    in its ErrorResponse shape (each route lists its refusals, models.errors)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
    return app.openapi_schema


# ---------------------------------------------------------------- errors -> JSON (errors.error_response)
async def _service_error(request, e):
    return error_response(e.status, e.message, e.headers, **e.extra)


async def _busy(request, e):
    return error_response(503, str(e), {"Retry-After": str(e.retry_after)})


async def _image_error(request, e):
    return error_response(413 if isinstance(e, ImageTooLargeError) else 400, str(e))


async def _gallery_error(request, e):
    return error_response(409, f"gallery: {e}")


async def _gallery_write_error(request, e):  # disk full ...: nothing was changed, a retry may work
    log.error("%s %s: %s", request.method, request.url.path, e)
    return error_response(507 if e.errno in NO_SPACE else 500, f"gallery: {e}")


async def _os_error(request, e):
    """The server's own files (stored uploads, the gallery): one line in the log naming the file,
    a message without the server's paths to the client."""
    where = " -> ".join(str(n) for n in (e.filename, e.filename2) if n is not None)
    log.error("%s %s: %s%s", request.method, request.url.path, f"{where}: " if where else "", e.strerror or e)
    if e.errno in NO_SPACE:
        return error_response(507, f"the server's storage is full ({e.strerror}); nothing was changed, retry later")
    return error_response(500, f"the server could not read or write its files ({e.strerror or type(e).__name__})")


async def _ppshitu_error(request, e):
    return error_response(400, str(e))


async def _http_error(request, e):
    message = e.detail
    if e.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; the API is described at /docs"
    elif e.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs"
    return error_response(e.status_code, str(message), getattr(e, "headers", None))


async def _validation_error(request, e):
    problems = ["{}: {}".format(".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path")),
                                err.get("msg", "invalid")) for err in e.errors()]
    return error_response(400, "; ".join(problems) or "invalid request")


async def _internal_error(request, e):
    ref = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=e)
    return error_response(500, f"internal error; the server logged it as {ref}")


ERROR_HANDLERS = ((ServiceError, _service_error), (Busy, _busy), (ImageReadError, _image_error),
                  (GalleryError, _gallery_error), (GalleryWriteError, _gallery_write_error), (OSError, _os_error),
                  (PPShiTuError, _ppshitu_error), (StarletteHTTPException, _http_error),
                  (RequestValidationError, _validation_error), (Exception, _internal_error))


class Guard:
    """The outermost layer: only the Host names it serves (a DNS-rebinding page cannot read the
    loopback service), and whatever escapes the app becomes a JSON 500 (Starlette re-raises after
    its error handler has answered)."""

    def __init__(self, app, allowed_hosts=None, max_header_bytes=None):
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts} if allowed_hosts else None
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.max_header_bytes and sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or ()) \
                + len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > self.max_header_bytes:
            return await _send_json(send, 431, f"the request line and headers are more than {self.max_header_bytes} "
                                               f"bytes", close=True)
        if self.allowed is not None:
            host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host.startswith("[") and "]" in host:
                name = host[:host.index("]") + 1]
            if name not in self.allowed:
                return await _send_json(send, 400, f"Host {host[:80]!r} is not served here (this server answers "
                                                   f"{sorted(self.allowed)})")
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)
        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # noqa: BLE001 - logged by the app's handler; never a traceback to the client
            if not started:
                await _send_json(send, 500, "internal error")


async def _send_json(send, status, message, close=False):
    headers, body = raw_error(status, message, close=close)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
