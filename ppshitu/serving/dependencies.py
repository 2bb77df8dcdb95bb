"""What routes declare with Depends: the service, and the checks made before a request's body is read
(FastAPI resolves a route's dependencies in order, before its handler runs):

    require_writer       writes need `Authorization: Bearer <token>` (401), and a configured token (403)
    room_for_inference   503 + Retry-After at once when the inference queue could not admit a job
    room_for_writes      the same for the writer thread's queue
"""
import hmac
from typing import Annotated

from fastapi import Depends, Request

from .errors import Forbidden, Unauthorized
from .service import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def require_writer(request: Request):
    """Before any body is read: writes need the configured token."""
    token = request.app.state.service.settings.token
    if token is None:
        raise Forbidden("writes are disabled: the server was started without a token (deploy/serve.py "
                        "--token T, or the PPSHITU_TOKEN environment variable)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("this route changes the gallery: send Authorization: Bearer <token>")


async def room_for_inference(request: Request):
    """Fail fast (before reading and decoding) when an inference job could not be admitted anyway."""
    request.app.state.service.inference.check_room()


async def room_for_writes(request: Request):
    request.app.state.service.writer.check_room()


WRITER = [Depends(require_writer), Depends(room_for_writes)]  # every gallery write route, in this order
