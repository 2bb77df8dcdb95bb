"""Request bodies, read by the service itself (never by FastAPI, which would read any size and before
the route's checks): within Settings.max_body and read_timeout, and within the shared body budget, so
memory stays bounded whatever the clients send (settings.py says how).

    reader = BodyReader(settings)
    async with reader.body(request) as data:            # the budget is held until the block ends
        files, form = await reader.uploads(request, data, ("image",))
    rgb = await read_image_upload(request)              # the one image of /predict and /search, decoded
"""
import asyncio
import contextlib

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from .errors import RequestTimeout, ServiceError, TooLarge
from .workers import Busy

MAX_NAME = 120  # characters of an uploaded file's name kept (for messages and answers only)


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


class BodyReader:
    def __init__(self, settings):
        self.settings = settings
        self.budget = BodyBudget(settings.body_budget)

    @contextlib.asynccontextmanager
    async def body(self, request, limit=None):
        """The whole request body, within max_body, read_timeout and the shared body budget (held
        until the block ends)."""
        limit = limit or self.settings.max_body
        declared = self._declared_length(request, limit)
        reserved = 0
        try:
            if declared is not None:
                self.budget.take(declared)
                reserved = declared
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

    @staticmethod
    def _declared_length(request, limit):
        """Content-Length, checked against `limit` before anything is read (None: chunked)."""
        declared = request.headers.get("content-length")
        if declared is None:
            return None
        if not declared.strip().isdigit():
            raise ServiceError(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        if int(declared) > limit:
            raise TooLarge(f"the body is {int(declared)} bytes; the limit is {limit} bytes")
        return int(declared)

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


async def read_image_upload(request):
    """The one image of a request (multipart field `image`, or the raw body), decoded; the body and its
    share of the budget are let go once it is decoded."""
    reader, service = request.app.state.bodies, request.app.state.service
    async with reader.body(request) as data:
        [(name, raw)], _ = await reader.uploads(request, data)
        return await service.decode(raw, "image" if name == "body" else f"image {name!r}")


MAX_TEXT_BODY = 64 << 10  # a JSON text query: a sentence, not a document


def is_json(request):
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def read_text_query(request):
    """The `text` of a JSON body {"text": "..."} (POST /search), within MAX_TEXT_BODY; ServiceError 400 naming
    what is wrong."""
    import json

    reader = request.app.state.bodies
    async with reader.body(request, limit=MAX_TEXT_BODY) as data:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ServiceError(f"the JSON body is not valid UTF-8 JSON ({str(e)[:80]}); send {{\"text\": \"a red "
                               f"car\"}}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise ServiceError(f"the JSON body must be {{\"text\": \"...\"}} with a string, got {str(doc)[:80]!r}")
    return doc["text"]
