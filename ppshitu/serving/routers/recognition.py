"""POST /predict: the objects in an image, recognised (or the image with them drawn)."""
import json

import cv2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..bodies import read_image_upload
from ..dependencies import ServiceDep, room_for_inference
from ..models import IMAGE_BODY, PredictResponse, errors

router = APIRouter(tags=["recognition"])
DRAWN = {200: {"description": "with draw=1: the image with its boxes and labels drawn (X-Labels: the labels)",
               "content": {"image/jpeg": {}, "image/png": {}}}}


@router.post("/predict", summary="Recognise the objects in an image", openapi_extra=IMAGE_BODY,
             response_model=PredictResponse, response_model_exclude_unset=True,
             dependencies=[Depends(room_for_inference)], responses={**DRAWN, **errors(400, 408, 409, 413, 503)})
async def predict(request: Request, service: ServiceDep, draw: bool = False,
                  format: str = Query("jpeg", pattern="^(jpeg|jpg|png)$")):  # noqa: A002 - the query's name
    rgb = await read_image_upload(request)
    answer = await service.predict(rgb)
    if draw:
        return await drawn(rgb, answer["results"], format)
    return answer


async def drawn(rgb, results, fmt):
    """The image with the results drawn, as a JPEG or PNG response (X-Labels: the labels, JSON)."""
    from ...visualize import draw_results

    def render():
        image = cv2.cvtColor(draw_results(rgb, results), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", image)
        return buf.tobytes()
    body = await run_in_threadpool(render)
    labels = json.dumps([r["rec_docs"] for r in results], ensure_ascii=True)
    return Response(body, media_type="image/png" if fmt == "png" else "image/jpeg", headers={"X-Labels": labels[:4000]})
