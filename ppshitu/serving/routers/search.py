"""POST /search: the gallery items nearest to an image's main object."""
from fastapi import APIRouter, Depends, Query, Request

from ..bodies import read_image_upload
from ..dependencies import ServiceDep, room_for_inference
from ..models import IMAGE_BODY, SearchResponse, errors

router = APIRouter(tags=["search"])


@router.post("/search", summary="The gallery items nearest to an image's main object", openapi_extra=IMAGE_BODY,
             response_model=SearchResponse, response_model_exclude_unset=True,
             dependencies=[Depends(room_for_inference)], responses=errors(400, 408, 409, 413, 503))
async def search(request: Request, service: ServiceDep, k: int = Query(0, ge=0, le=100,
                                                                        description="0: IndexProcess.return_k"),
                 whole: bool = Query(False, description="search with the whole image, not its main object")):
    rgb = await read_image_upload(request)
    return await service.search(rgb, k, whole)
