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
    GET    /docs, /openapi.json            the API described (FastAPI)

An image is a multipart field `image` or the raw request body. Every refusal is JSON
{"error": ..., "status": ...}: 400 bad input, 401/403 writes without the token / without one
configured, 404, 408 too slow, 409 conflict, 413 too large (body or pixels, refused before
decoding), 503 + Retry-After when the queue is full, 507 when the server's disk is full (nothing
changed). No traceback ever reaches a client.
"""
import asyncio
import contextlib
import errno
import hmac
import json
import logging
import os
import uuid

import cv2
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import PPShiTuError
from ..gallery import GalleryError
from ..gallery.errors import GalleryWriteError
from ..utils.image import ImageReadError, ImageTooLargeError, decode_image
from .errors import Forbidden, NotFound, RequestTimeout, ServiceError, TooLarge, Unauthorized
from .service import check_label, sha256
from .workers import Busy

log = logging.getLogger("ppshitu.serving")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
EMBED_CHUNK = 8          # images decoded and embedded together when adding to the gallery
MAX_JSON_BODY = 64 * 1024
MAX_NAME = 120
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # 507 Insufficient Storage

_IMAGE = {"type": "string", "format": "binary"}
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"image": _IMAGE}, "required": ["image"]}},
    "image/*": {"schema": _IMAGE}, "application/octet-stream": {"schema": _IMAGE}}}}
ITEMS_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["label", "images"], "properties": {
        "label": {"type": "string"}, "images": {"type": "array", "items": _IMAGE}}}},
    "image/*": {"schema": _IMAGE}}}}
RENAME_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}}}}}}


def error_response(status, message, headers=None, **extra):
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status, headers=headers)


class BodyBudget:
    """Bytes of request bodies held at once (event-loop thread only). A request that does not fit is
    refused with 503 unless nothing else is held (a body under max_body always fits alone)."""

    def __init__(self, total):
        self.total, self.used = int(total), 0

    def take(self, n):
        if self.used and self.used + n > self.total:
            raise Busy(f"{self.used >> 20} MiB of uploads are being received; retry later", 1)
        self.used += n

    def give(self, n):
        self.used -= n


class Api:
    def __init__(self, service):
        self.service, self.settings = service, service.settings
        self.budget = BodyBudget(self.settings.body_budget)
        self.decode_slots = asyncio.Semaphore(self.settings.decode_slots)
        self.page = {}
        for name in PAGE_FILES:
            with open(os.path.join(STATIC, name), "rb") as f:
                self.page[name] = f.read()

    # ------------------------------------------------------------ request pieces
    def require_writer(self, request):
        """Before any body is read: writes need the configured token."""
        token = self.settings.token
        if token is None:
            raise Forbidden("writes are disabled: the server was started without a token (deploy/serve.py "
                            "--token T, or the PPSHITU_TOKEN environment variable)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("this route changes the gallery: send Authorization: Bearer <token>")

    @contextlib.asynccontextmanager
    async def body(self, request, limit=None):
        """The whole request body, within max_body, read_timeout and the shared body budget (held
        until the request is answered)."""
        limit = limit or self.settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise ServiceError(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
            if int(declared) > limit:
                raise TooLarge(f"the body is {int(declared)} bytes; the limit is {limit} bytes")
        reserved = 0
        try:
            if declared is not None:
                self.budget.take(int(declared))
                reserved = int(declared)
            chunks, size = [], 0
            try:
                async with asyncio.timeout(self.settings.read_timeout):
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limit:
                            raise TooLarge(f"the body is more than the limit of {limit} bytes")
                        if size > reserved:  # chunked upload: reserve as it grows
                            grow = max(size - reserved, 1 << 20)
                            self.budget.take(grow)
                            reserved += grow
                        chunks.append(chunk)
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.settings.read_timeout:g} s") \
                    from None
            except ClientDisconnect:
                raise ServiceError("the client closed the connection before sending its body") from None
            yield b"".join(chunks)
        finally:
            self.budget.give(reserved)

    async def form(self, request, data, max_files):
        """Parse a multipart body already read (and limited) by body()."""
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        return await Request(request.scope, replay).form(max_files=max_files, max_fields=16,
                                                         max_part_size=self.settings.max_body)

    async def uploads(self, request, data, field_names=("image",), max_files=1):
        """[(name, bytes)] from multipart fields (or the raw body), and the form (for its text fields)."""
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return [("body", data)], None
        form = await self.form(request, data, max_files)
        files = []
        for name in field_names:
            for value in form.getlist(name):
                if not isinstance(value, UploadFile):
                    raise ServiceError(f"multipart field {name!r} must be a file, got text")
                files.append(((value.filename or name)[:MAX_NAME], await value.read()))
        await form.close()
        if not files:
            raise ServiceError(f"send the image as a multipart file field named {field_names[0]!r} "
                               f"(or as the raw request body)")
        return files, form

    async def decode(self, data, where):
        if not data:
            raise ServiceError(f"{where}: empty; send the image file's bytes")
        async with self.decode_slots:
            return await run_in_threadpool(decode_image, data, where, self.service.max_pixels())

    async def infer(self, fn, pixels=0):
        return await asyncio.wrap_future(self.service.inference.submit(fn, pixels))

    async def write(self, fn):
        return await asyncio.wrap_future(self.service.writer.submit(fn))

    def refuse_if_full(self, *owners):
        """Fail fast (before reading and decoding) when a job could not be admitted anyway."""
        for owner in owners:
            owner.check_room()

    def item_json(self, rec):
        path = rec.get("path")
        return {"id": rec["id"], "label": rec["label"], "name": os.path.basename(path) if path else None,
                "box": rec.get("box"), "added_at": rec.get("added_at"),
                "thumbnail": f"/api/items/{rec['id']}/thumbnail"}


def create_app(service):
    """The ASGI app for a started Service."""
    api = Api(service)
    app = FastAPI(title="ppshitu recognition service",
                  description="Open-set recognition by retrieval: detector -> embeddings -> gallery. "
                              "Writes (POST/DELETE/PATCH under /api) need Authorization: Bearer <token>.",
                  version="1.0")
    settings = service.settings

    # ------------------------------------------------------------ errors -> JSON
    @app.exception_handler(ServiceError)
    async def _service_error(request, e):
        return error_response(e.status, e.message, e.headers, **e.extra)

    @app.exception_handler(Busy)
    async def _busy(request, e):
        return error_response(503, str(e), {"Retry-After": str(e.retry_after)})

    @app.exception_handler(ImageReadError)
    async def _image_error(request, e):
        return error_response(413 if isinstance(e, ImageTooLargeError) else 400, str(e))

    @app.exception_handler(GalleryError)
    async def _gallery_error(request, e):
        return error_response(409, f"gallery: {e}")

    @app.exception_handler(GalleryWriteError)
    async def _gallery_write_error(request, e):  # disk full ...: nothing was changed, a retry may work
        log.error("%s %s: %s", request.method, request.url.path, e)
        return error_response(507 if e.errno in NO_SPACE else 500, f"gallery: {e}")

    @app.exception_handler(OSError)
    async def _os_error(request, e):
        """The server's own files (stored uploads, the gallery): one line in the log naming the file,
        a message without the server's paths to the client."""
        where = " -> ".join(str(n) for n in (e.filename, e.filename2) if n is not None)
        log.error("%s %s: %s%s", request.method, request.url.path, f"{where}: " if where else "", e.strerror or e)
        if e.errno in NO_SPACE:
            return error_response(507, f"the server's storage is full ({e.strerror}); nothing was changed, retry later")
        return error_response(500, f"the server could not read or write its files ({e.strerror or type(e).__name__})")

    @app.exception_handler(PPShiTuError)
    async def _ppshitu_error(request, e):
        return error_response(400, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        message = e.detail
        if e.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; the API is described at /docs"
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return error_response(e.status_code, str(message), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e):
        problems = ["{}: {}".format(".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path")),
                                    err.get("msg", "invalid")) for err in e.errors()]
        return error_response(400, "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def _internal_error(request, e):
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=e)
        return error_response(500, f"internal error; the server logged it as {ref}")

    # ------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(api.page["index.html"], headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in PAGE_FILES or name == "index.html":
            raise NotFound(f"no file {name!r}")
        return Response(api.page[name], media_type=PAGE_FILES[name], headers=PAGE_HEADERS)

    # ------------------------------------------------------------ recognition
    @app.get("/health", summary="Gallery version, count, labels, model fingerprint, queue state")
    async def health():
        return await run_in_threadpool(service.health)

    @app.post("/predict", summary="Recognise the objects in an image", openapi_extra=IMAGE_BODY)
    async def predict(request: Request, draw: bool = False,
                      format: str = Query("jpeg", pattern="^(jpeg|jpg|png)$")):  # noqa: A002 - the query name
        api.refuse_if_full(service.inference)
        async with api.body(request) as data:
            [(name, raw)], _ = await api.uploads(request, data)
            rgb = await api.decode(raw, "image" if name == "body" else f"image {name!r}")
            data = raw = None  # the encoded bytes are not needed past decoding
        out = await api.infer(lambda r: r.predict(rgb), rgb.shape[0] * rgb.shape[1])
        if draw:
            from ..visualize import draw_results

            def render():
                drawn = cv2.cvtColor(draw_results(rgb, out["results"]), cv2.COLOR_RGB2BGR)
                ok, buf = cv2.imencode(".png" if format == "png" else ".jpg", drawn)
                return buf.tobytes()
            body = await run_in_threadpool(render)
            labels = json.dumps([r["rec_docs"] for r in out["results"]], ensure_ascii=True)
            return Response(body, media_type="image/png" if format == "png" else "image/jpeg",
                            headers={"X-Labels": labels[:4000]})
        return {"results": out["results"], "width": rgb.shape[1], "height": rgb.shape[0],
                "gallery": {"version": out["version"], "count": out["count"]}}

    @app.post("/search", summary="The gallery items nearest to an image's main object", openapi_extra=IMAGE_BODY)
    async def search(request: Request, k: int = Query(0, ge=0, le=100), whole: bool = False):
        api.refuse_if_full(service.inference)
        async with api.body(request) as data:
            [(name, raw)], _ = await api.uploads(request, data)
            rgb = await api.decode(raw, "image" if name == "body" else f"image {name!r}")
            data = raw = None
        out = await api.infer(lambda r: r.search(rgb, k or service.return_k, whole), rgb.shape[0] * rgb.shape[1])
        items = []
        records = await run_in_threadpool(lambda: [service.catalog.record(h["id"]) for h in out["results"]])
        for hit, rec in zip(out["results"], records):
            items.append({**(api.item_json(rec) if rec else {"id": hit["id"], "label": hit["label"],
                                                             "thumbnail": f"/api/items/{hit['id']}/thumbnail"}),
                          "score": hit["score"]})
        return {"box": out["box"], "results": items, "higher_is_better": out["higher_is_better"],
                "width": rgb.shape[1], "height": rgb.shape[0], "gallery": {"version": out["version"]}}

    # ------------------------------------------------------------ gallery: reads
    @app.get("/api/labels", summary="The classes and how many items each has")
    async def labels():
        version, counts = await run_in_threadpool(service.catalog.label_counts)
        return {"version": version, "count": sum(counts.values()),
                "labels": [{"label": k, "count": v} for k, v in counts.items()]}

    @app.get("/api/items", summary="Gallery items, optionally of one class, paged")
    async def items(label: str = None, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)):
        version, total, rows = await run_in_threadpool(service.catalog.items, label, offset, limit)
        return {"version": version, "label": label, "total": total, "offset": offset, "limit": limit,
                "items": [api.item_json(r) for r in rows]}

    @app.get("/api/items/{item_id}", summary="One gallery item")
    async def item(item_id: int):
        rec = await run_in_threadpool(service.catalog.record, item_id)
        if rec is None:
            raise NotFound(f"no gallery item {item_id}")
        return api.item_json(rec)

    @app.get("/api/items/{item_id}/thumbnail", summary="A gallery item's image, small (JPEG)",
             response_class=Response)
    async def thumbnail(item_id: int, size: int = Query(160, ge=16, le=512), crop: bool = False):
        data = await run_in_threadpool(service.thumbnails.get, item_id, size, crop)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------ gallery: writes
    @app.post("/api/items", status_code=201, openapi_extra=ITEMS_BODY,
              summary="Add images under a label (embedded, appended atomically; duplicates reported)")
    async def add_items(request: Request, label: str = None):
        api.require_writer(request)
        api.refuse_if_full(service.inference, service.writer)
        async with api.body(request) as data:
            files, form = await api.uploads(request, data, ("images", "image"), settings.max_files)
            label = check_label(label if label is not None else (form.get("label") if form is not None else None))
            return await _add(label, files)

    async def _add(label, files):
        duplicates, rejected, todo, seen = [], [], [], set()
        shas = await run_in_threadpool(lambda: [sha256(raw) for _, raw in files])
        known = await run_in_threadpool(service.catalog.existing_paths,
                                        [service.upload_path(sha, raw) for sha, (_, raw) in zip(shas, files)])
        for sha, (name, raw) in zip(shas, files):
            path = service.upload_path(sha, raw)
            if sha in seen or path in known:
                rec = await run_in_threadpool(service.catalog.by_path, path)
                duplicates.append({"name": name, "reason": "the same image is already in the gallery" if rec else
                                   "the same image twice in this request",
                                   **({"id": rec["id"], "label": rec["label"]} if rec else {})})
                continue
            seen.add(sha)
            todo.append((name, sha, raw))
        # every image is decoded and embedded first (a chunk at a time, to bound memory), then ALL of
        # them go to the gallery in ONE update: a server killed during the request has published
        # none of them or all of them, never a part that a retry would report as duplicates
        kept_images, vectors, boxes = [], [], []
        for start in range(0, len(todo), EMBED_CHUNK):
            chunk, decoded = todo[start:start + EMBED_CHUNK], []
            for name, sha, raw in chunk:
                try:
                    decoded.append((name, sha, raw, await api.decode(raw, f"image {name!r}")))
                except ImageReadError as e:
                    rejected.append({"name": name, "error": str(e),
                                     "status": 413 if isinstance(e, ImageTooLargeError) else 400})
            if not decoded:
                continue
            pixels = sum(d[3].shape[0] * d[3].shape[1] for d in decoded)
            emb = await api.infer(lambda r: r.embed([(name, rgb) for name, _, _, rgb in decoded]), pixels)
            rejected += [{"name": decoded[pos][0], "error": why, "status": 400} for pos, why in emb.refused.items()]
            kept_images += [decoded[pos][:3] for pos in emb.index]
            vectors.append(emb.vectors)
            boxes += emb.boxes
            decoded = None  # the decoded pixels are not needed past embedding
        added = []
        summary = None
        if kept_images:
            uploads = [(sha, raw) for _, sha, raw in kept_images]
            all_vectors = np.concatenate(vectors)
            ids, paths, summary = await api.write(lambda w: w.add(label, uploads, all_vectors, boxes))
            for (name, _, _), item_id in zip(kept_images, ids):
                if item_id >= 0:
                    added.append({"name": name, "id": item_id, "thumbnail": f"/api/items/{item_id}/thumbnail"})
                else:
                    duplicates.append({"name": name, "reason": "the same image is already in the gallery"})
        if summary is None:
            s = await run_in_threadpool(service.catalog.summary)
            summary = {"version": s["version"], "count": s["count"]}
        body = {"label": label, "added": added, "duplicates": duplicates, "rejected": rejected, "gallery": summary}
        if not added and not duplicates:
            return error_response(400, f"none of the {len(files)} images could be added", **body)
        if added:
            log.warning("added %d image(s) to %r (gallery %s, %d items)", len(added), label, summary["version"],
                        summary["count"])
        return JSONResponse(body, status_code=201 if added else 200)

    @app.delete("/api/items/{item_id}", summary="Remove one gallery item")
    async def delete_item(request: Request, item_id: int):
        api.require_writer(request)
        api.refuse_if_full(service.writer)
        return await api.write(lambda w: w.remove_item(item_id))

    @app.delete("/api/labels/{label:path}", summary="Remove a class and all its items")
    async def delete_label(request: Request, label: str):
        api.require_writer(request)
        api.refuse_if_full(service.writer)
        return await api.write(lambda w: w.remove_label(label))

    @app.patch("/api/labels/{label:path}", summary="Rename a class", openapi_extra=RENAME_BODY)
    async def rename_label(request: Request, label: str, merge: bool = False):
        api.require_writer(request)
        api.refuse_if_full(service.writer)
        async with api.body(request, MAX_JSON_BODY) as data:
            try:
                doc = json.loads(data or b"null")
            except (UnicodeDecodeError, ValueError):
                raise ServiceError('send JSON: {"label": "new name"}') from None
        if not isinstance(doc, dict) or "label" not in doc:
            raise ServiceError('send JSON: {"label": "new name"}')
        new = check_label(doc["label"])
        return await api.write(lambda w: w.rename(label, new, merge))

    @app.post("/api/compact", summary="Rebuild the index without removed items")
    async def compact(request: Request):
        api.require_writer(request)
        api.refuse_if_full(service.writer)
        return await api.write(lambda w: w.compact())

    return Guard(app, settings.allowed_hosts, settings.max_header_bytes)


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
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": body})
