"""POST /search: the gallery items nearest to an image's main object, or to a sentence (a text-image model)."""
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request

from ..bodies import is_json, read_image_upload, read_text_query
from ..dependencies import ServiceDep, room_for_inference
from ..models import SEARCH_BODY, SearchResponse, errors

router = APIRouter(tags=["search"])


@router.post("/search", summary="The gallery items nearest to an image's main object, or to a text query",
             description="Send an image (multipart field `image`, or the raw body), or a text query: `?text=...` or "
                         "the JSON body {\"text\": \"a red car\"}. Text needs a gallery indexed with a text-image "
                         "model's image encoder (tools/import_model.py --text-encoder); another model's gallery is "
                         "refused (409). A query longer than the model's context length is cut to it: `truncated` "
                         "and `note` say so.",
             openapi_extra=SEARCH_BODY, response_model=SearchResponse, response_model_exclude_unset=True,
             dependencies=[Depends(room_for_inference)], responses=errors(400, 408, 409, 413, 503))
async def search(request: Request, service: ServiceDep, k: int = Query(0, ge=0, le=100,
                                                                        description="0: IndexProcess.return_k"),
                 whole: bool = Query(False, description="search with the whole image, not its main object"),
                 text: Optional[str] = Query(None, description="a text query instead of an image")):
    if text is None and is_json(request):
        text = await read_text_query(request)
    if text is not None:
        return await service.search_text(text, k)
    rgb = await read_image_upload(request)
    return await service.search(rgb, k, whole)
