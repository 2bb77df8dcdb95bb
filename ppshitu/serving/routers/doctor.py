"""The gallery doctor in the service: GET /api/gallery/doctor (its report as JSON, cached by the gallery's
version: serving/doctor_view.py) and GET /doctor (the page: static/doctor.html + doctor.js + doctor.css)."""
import os

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ...utils.files import read_input_bytes
from ..doctor_view import DoctorView
from ..errors import NotFound
from ..models import DoctorResponse
from .page import PAGE_HEADERS, STATIC

FILES = {"doctor.html": "text/html; charset=utf-8", "doctor.js": "text/javascript; charset=utf-8",
         "doctor.css": "text/css; charset=utf-8"}

router = APIRouter(tags=["gallery"])


def doctor_view(request: Request) -> DoctorView:
    """The app's one DoctorView (made on first use: its cache lives as long as the app)."""
    state = request.app.state
    view = getattr(state, "doctor", None)
    if view is None:
        view = state.doctor = DoctorView(state.service.catalog)
    return view


def _file(request, name):
    files = getattr(request.app.state, "doctor_files", None)
    if files is None:  # read once
        files = {n: read_input_bytes(os.path.join(STATIC, n), "the doctor page's file") for n in FILES}
        request.app.state.doctor_files = files
    return files[name]


@router.get("/api/gallery/doctor", summary="The gallery doctor: per-label leave-one-out recall@1, confused "
            "pairs, suspected mislabels, the same image under two labels, outliers (from the stored vectors; "
            "cached per gallery version)", response_model=DoctorResponse, response_model_exclude_unset=True)
async def doctor(view: DoctorView = Depends(doctor_view),
                 k: int = Query(3, ge=1, le=50, description="neighbours that must all carry another label "
                                                              "for a suspected mislabel")):
    return await run_in_threadpool(view.report, k)


@router.get("/doctor", include_in_schema=False)
async def doctor_page(request: Request):
    return HTMLResponse(_file(request, "doctor.html"), headers=PAGE_HEADERS)


@router.get("/doctor/{name}", include_in_schema=False)
async def doctor_static(request: Request, name: str):
    if name not in FILES or name == "doctor.html":
        raise NotFound(f"no file {name!r}")
    return Response(_file(request, name), media_type=FILES[name], headers=PAGE_HEADERS)
