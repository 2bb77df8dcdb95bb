"""The shapes of the API: pydantic models of every JSON request and answer, so /docs and /openapi.json
describe them (the routes declare them as their response_model; an answer's unset optional keys are
left out, as the service has always answered). Image uploads are read by bodies.py within the
service's limits, not by FastAPI, so their request bodies are described here for the docs."""
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .service import check_label

Number = Union[int, float]  # kept as given: an int stays an int in the JSON


class Answer(BaseModel):
    # keys a newer service adds pass through (a client reads what it knows)
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- refusals
class ErrorResponse(Answer):
    error: str = Field(description="what was wrong, in one line (never a traceback)")
    status: int = Field(description="the HTTP status, repeated")


def errors(*codes):
    """The `responses` of a route: each refusal it may answer, with its JSON shape."""
    what = {400: "bad input", 401: "a write without the right token", 403: "writes are disabled (no token)",
            404: "not found", 408: "the body arrived too slowly", 409: "a conflict (a class exists; another model's "
            "gallery)", 413: "too large (body or pixels, refused before decoding)", 503: "busy: retry after "
            "Retry-After seconds", 507: "the server's disk is full (nothing changed)"}
    return {code: {"model": ErrorResponse, "description": what[code]} for code in codes}


# ---------------------------------------------------------------- health
class ModelInfo(Answer):
    fingerprint: Optional[str] = None
    embedding_size: Optional[int] = None
    text_search: Optional[bool] = Field(None, description="the model has a text encoder and made the gallery's "
                                                          "vectors: POST /search takes text queries")


class InferenceStats(Answer):
    running_or_waiting: int
    workers: int
    capacity: int
    pixels_in_flight: int
    rejected: int
    avg_job_ms: Number


class Limits(Answer):
    max_body_bytes: int
    max_pixels: int
    max_files: int


class HealthResponse(Answer):
    status: Literal["ok", "degraded"]
    version: Optional[str] = Field(None, description="the gallery version answering (FAISS: v000007; Milvus: "
                                                     "its revision; None: a store without versions)")
    count: int
    labels: int
    model_fingerprint: Optional[str] = None
    embedding_size: Optional[int] = None
    index_method: Optional[str] = None
    dist_type: Optional[str] = None
    updated_at: Optional[str] = None
    gallery_size: int
    backend: str
    location: str
    model: ModelInfo
    model_matches_gallery: bool
    writes_enabled: bool
    writes: str
    inference: InferenceStats
    stale: Optional[str] = Field(None, description="why the gallery could not be refreshed, when it could not")
    limits: Limits
    uptime_s: Optional[Number] = None


# ---------------------------------------------------------------- recognition
class Match(Answer):
    label: str
    score: Number
    id: Optional[int] = Field(None, description="the gallery item (GET /api/items/{id}, its thumbnail)")


class Recognition(Answer):
    bbox: list[int] = Field(description="[x1, y1, x2, y2] in the image's pixels")
    rec_docs: str = Field(description='the label, or "unknown" when the best match fails the threshold')
    rec_scores: Optional[Number] = Field(description="the best match's score (cosine for IP galleries)")
    nearest_docs: Optional[str] = Field(description="the nearest label, even when unknown")
    det_score: Optional[Number] = None
    source: Literal["det", "image"]
    uniform: bool = Field(description="a crop without detail: unknown whatever its score")
    topk: list[Match]


class GalleryState(Answer):
    version: Optional[str] = None
    count: Optional[int] = None


class PredictResponse(Answer):
    results: list[Recognition]
    width: int
    height: int
    gallery: GalleryState


class Item(Answer):
    id: int
    label: str
    name: Optional[str] = Field(None, description="the image's file name")
    box: Optional[list[Number]] = Field(None, description="the main object's box, when one was indexed")
    added_at: Optional[str] = None
    thumbnail: str = Field(description="GET it for a small JPEG of the item's image")


class SearchHit(Item):
    score: Number


class SearchResponse(Answer):
    box: Optional[list[Number]] = Field(description="the main object searched; null: the whole image (or a text "
                                                    "query)")
    results: list[SearchHit]
    higher_is_better: bool
    width: Optional[int] = Field(None, description="the query image's size (an image query)")
    height: Optional[int] = None
    text: Optional[str] = Field(None, description="the text query (a text query)")
    truncated: Optional[bool] = Field(None, description="the text query was cut to the model's context length")
    note: Optional[str] = Field(None, description="what was cut, when it was")
    gallery: GalleryState


# ---------------------------------------------------------------- gallery
class LabelCount(Answer):
    label: str
    count: int


class LabelsResponse(Answer):
    version: Optional[str] = None
    count: int
    labels: list[LabelCount]


class ItemsResponse(Answer):
    version: Optional[str] = None
    label: Optional[str] = None
    total: int
    offset: int
    limit: int
    items: list[Item]


class Added(Answer):
    name: str
    id: int
    thumbnail: str


class Duplicate(Answer):
    name: str
    reason: str
    id: Optional[int] = Field(None, description="the gallery item it duplicates, when it is in the gallery")
    label: Optional[str] = None


class Rejected(Answer):
    name: str
    error: str
    status: int


class AddItemsResponse(Answer):
    label: str
    added: list[Added]
    duplicates: list[Duplicate]
    rejected: list[Rejected]
    gallery: GalleryState


class GallerySummary(Answer):
    version: Optional[str] = None
    count: int


class Compacted(GallerySummary):
    reclaimed_uploads: int = Field(0, description="stored uploads no item named (left by a server killed "
                                                  "mid-removal), deleted")


class RemovedItems(GallerySummary):
    removed: list[int]


class RemovedLabel(GallerySummary):
    label: str
    removed: int


class Renamed(GallerySummary):
    label: str
    previous: str
    moved: int
    ids: Optional[list[int]] = None
    lost: Optional[int] = Field(None, description="items added to the old class by another process meanwhile")


# ---------------------------------------------------------------- the gallery doctor (doctor_view.py)
class DoctorItem(Answer):
    id: int
    label: str
    name: Optional[str] = None
    thumbnail: str


class DoctorLabel(Answer):
    label: str
    count: int
    loo_recall_at_1: Optional[Number] = Field(None, description="leave-one-out recall@1 (none: one image)")


class DoctorMislabel(DoctorItem):
    suggested: str = Field(description="the label its nearest items carry")
    margin: Number
    z: Optional[Number] = Field(None, description="the margin's robust z over the gallery")
    position: Optional[Number] = Field(None, description="own label's centroid between a typical unrelated label "
                                       "(0) and the nearest other label (1): a suspected mislabel is under 0.6")
    neighbours: list[DoctorItem]


class DoctorResponse(Answer):
    version: Optional[str] = Field(None, description="the gallery version diagnosed (the cache's key)")
    items: int
    labels: int
    summary: dict
    label_table: list[DoctorLabel] = Field(description="per label, worst leave-one-out recall@1 first")
    confused_pairs: list[dict] = []
    suspected_mislabels: list[DoctorMislabel] = []
    same_image_two_labels: list[dict] = []
    outliers: list[dict] = []
    single_image_labels: list[str] = []


# ---------------------------------------------------------------- requests
class RenameRequest(BaseModel):
    label: str = Field(description="the class's new name (200 characters at most, no control characters)")

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value):
        return check_label(value)  # a ServiceError (400) naming what is wrong


class ImageForm(BaseModel):
    image: bytes = Field(description="the image file")


class ItemsForm(BaseModel):
    label: str = Field(description="the class the images are added to")
    images: list[bytes] = Field(description="the image files (64 at most by default)")


_BINARY = {"type": "string", "format": "binary"}


def _body(content):
    return {"requestBody": {"required": True, "content": content}}


class TextQuery(BaseModel):
    text: str = Field(description="the sentence to search for (a text-image model's gallery)")


SEARCH_BODY = _body({"multipart/form-data": {"schema": ImageForm.model_json_schema()},
                     "image/*": {"schema": _BINARY}, "application/octet-stream": {"schema": _BINARY},
                     "application/json": {"schema": TextQuery.model_json_schema()}})
IMAGE_BODY = _body({"multipart/form-data": {"schema": ImageForm.model_json_schema()},
                    "image/*": {"schema": _BINARY}, "application/octet-stream": {"schema": _BINARY}})
ITEMS_BODY = _body({"multipart/form-data": {"schema": ItemsForm.model_json_schema()},
                    "image/*": {"schema": _BINARY}})
RENAME_BODY = _body({"application/json": {"schema": RenameRequest.model_json_schema()}})
