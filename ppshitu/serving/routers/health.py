"""GET /health: the gallery answering, the model, the queue, the limits."""
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ..dependencies import ServiceDep
from ..models import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="Gallery version, count, labels, model fingerprint, queue state",
            response_model=HealthResponse, response_model_exclude_unset=True)
async def health(service: ServiceDep):
    return await run_in_threadpool(service.health)
