"""The web page: plain HTML + JS + CSS from ppshitu/serving/static/, read once, served with strict headers."""
import os

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import NotFound

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def load_page():
    """{file name: bytes} of the page's files (app.state.page)."""
    page = {}
    for name in PAGE_FILES:
        with open(os.path.join(STATIC, name), "rb") as f:
            page[name] = f.read()
    return page


@router.get("/")
async def index(request: Request):
    return HTMLResponse(request.app.state.page["index.html"], headers=PAGE_HEADERS)


@router.get("/static/{name}")
async def static(request: Request, name: str):
    if name not in PAGE_FILES or name == "index.html":
        raise NotFound(f"no file {name!r}")
    return Response(request.app.state.page[name], media_type=PAGE_FILES[name], headers=PAGE_HEADERS)
