"""The gallery's classes and items under /api: read by anyone, written with the token (dependencies.WRITER
checks it, and the writer queue's room, before any body is read). Every write is one gallery update."""
import json

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..bodies import BodyReader
from ..dependencies import WRITER, ServiceDep, require_writer, room_for_inference, room_for_writes
from ..errors import ServiceError
from ..models import (ITEMS_BODY, RENAME_BODY, AddItemsResponse, Compacted, Item, ItemsResponse, LabelsResponse,
                      RemovedItems, RemovedLabel, Renamed, RenameRequest, errors)
from ..service import check_label

router = APIRouter(prefix="/api", tags=["gallery"])
MAX_JSON_BODY = 64 * 1024
WRITE_ERRORS = errors(400, 401, 403, 404, 409, 503, 507)


# ---------------------------------------------------------------- reads
@router.get("/labels", summary="The classes and how many items each has", response_model=LabelsResponse,
            response_model_exclude_unset=True)
async def labels(service: ServiceDep):
    return await run_in_threadpool(service.labels)


@router.get("/items", summary="Gallery items, optionally of one class, paged", response_model=ItemsResponse,
            response_model_exclude_unset=True, responses=errors(400))
async def items(service: ServiceDep, label: str = None, offset: int = Query(0, ge=0),
                limit: int = Query(50, ge=1, le=500)):
    return await run_in_threadpool(service.items, label, offset, limit)


@router.get("/items/{item_id}", summary="One gallery item", response_model=Item, response_model_exclude_unset=True,
            responses=errors(400, 404))
async def item(service: ServiceDep, item_id: int):
    return await run_in_threadpool(service.item, item_id)


@router.get("/items/{item_id}/thumbnail", summary="A gallery item's image, small (JPEG)", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **errors(400, 404)})
async def thumbnail(service: ServiceDep, item_id: int, size: int = Query(160, ge=16, le=512), crop: bool = False):
    data = await run_in_threadpool(service.thumbnails.get, item_id, size, crop)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# ---------------------------------------------------------------- writes
@router.post("/items", status_code=201, openapi_extra=ITEMS_BODY, response_model=AddItemsResponse,
             response_model_exclude_unset=True, summary="Add images under a label (embedded, appended atomically; "
                                                        "duplicates reported)",
             dependencies=[Depends(require_writer), Depends(room_for_inference), Depends(room_for_writes)],
             responses={200: {"model": AddItemsResponse, "description": "nothing new: every image was a duplicate"},
                        **errors(400, 401, 403, 408, 409, 413, 503, 507)})
async def add_items(request: Request, response: Response, service: ServiceDep, label: str = None):
    reader: BodyReader = request.app.state.bodies
    async with reader.body(request) as data:
        files, form = await reader.uploads(request, data, ("images", "image"), service.settings.max_files)
        label = check_label(label if label is not None else (form.get("label") if form is not None else None))
        answer = await service.add_images(label, files)
    response.status_code = 201 if answer["added"] else 200
    return answer


@router.delete("/items/{item_id}", summary="Remove one gallery item", response_model=RemovedItems,
               response_model_exclude_unset=True, dependencies=WRITER, responses=WRITE_ERRORS)
async def delete_item(service: ServiceDep, item_id: int):
    return await service.write(lambda w: w.remove_item(item_id))


@router.delete("/labels/{label:path}", summary="Remove a class and all its items", response_model=RemovedLabel,
               response_model_exclude_unset=True, dependencies=WRITER, responses=WRITE_ERRORS)
async def delete_label(service: ServiceDep, label: str):
    return await service.write(lambda w: w.remove_label(label))


@router.patch("/labels/{label:path}", summary="Rename a class", openapi_extra=RENAME_BODY, response_model=Renamed,
              response_model_exclude_unset=True, dependencies=WRITER, responses=WRITE_ERRORS)
async def rename_label(request: Request, service: ServiceDep, label: str,
                       merge: bool = Query(False, description="merge into an existing class of the new name")):
    async with request.app.state.bodies.body(request, MAX_JSON_BODY) as data:
        try:
            doc = json.loads(data or b"null")
        except (UnicodeDecodeError, ValueError):
            raise ServiceError('send JSON: {"label": "new name"}') from None
    if not isinstance(doc, dict) or "label" not in doc:
        raise ServiceError('send JSON: {"label": "new name"}')
    new = RenameRequest.model_validate(doc).label
    return await service.write(lambda w: w.rename(label, new, merge))


@router.post("/compact", summary="Rebuild the index without removed items; reclaim stored uploads no item names",
             response_model=Compacted,
             response_model_exclude_unset=True, dependencies=WRITER, responses=WRITE_ERRORS)
async def compact(service: ServiceDep):
    return await service.write(lambda w: w.compact())
