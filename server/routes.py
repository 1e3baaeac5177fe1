"""The native JSON API: search, classify, info, and the indexed images by id.

Handlers parse and answer on the event loop; encoding, FAISS and file reads run in worker threads
(`run_in_threadpool`), so a slow request (an image upload, a big k) doesn't hold up fast ones.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from clipsearch.errors import ImageError
from clipsearch.search.algebra import IMAGE
from clipsearch.search.matcher import Answer
from clipsearch.search.matcher import Request as Ask
from clipsearch.server import uploads
from clipsearch.server.auth import URL_TOKEN
from clipsearch.server.problems import Problem
from clipsearch.server.schemas import ClassifyAnswer, ClassifyBody, QueryImage, SearchAnswer, SearchBody
from clipsearch.server.service import BROWSER_SUFFIXES, Service, describe_query
from clipsearch.store.filters import make_filter

router = APIRouter()
_SOURCES = ("query", "image", "image_id", "image_url", "embedding")
_BINARY = {"requestBody": {"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}}


def service_of(request: Request) -> Service:
    return request.app.state.service


class Links:
    """This server's URLs of an indexed image, with ?token= when the client authenticated that way."""

    def __init__(self, request: Request):
        self.base = str(request.base_url)
        token = request.scope.get("state", {}).get(URL_TOKEN)
        self.suffix = f"?token={quote(token)}" if token else ""

    def image(self, image_id: int) -> str:
        return f"{self.base}image/{image_id}{self.suffix}"

    def thumbnail(self, image_id: int) -> str:
        return f"{self.base}thumbnail/{image_id}{self.suffix}"


@router.post("/search", response_model=SearchAnswer, summary="Search images (or a text collection)")
async def search(body: SearchBody, request: Request):
    """By algebra words (`query`), an uploaded image, an indexed image's id or a vector; filtered,
    sorted and collapsed as `clipsearch query` does, through the same query method."""
    service = service_of(request)
    return _answer(await run_in_threadpool(_search, service, body), Links(request))


@router.post("/search/image", response_model=SearchAnswer, openapi_extra=_BINARY,
             summary="Search with an uploaded image file (the body is its bytes)")
async def search_image(request: Request, k: int = Query(SearchBody.model_fields["k"].default, ge=1),
                       texts: str | None = None, collapse: bool = False, min_score: float | None = None):
    """`curl --data-binary @photo.jpg URL/search/image?k=5`: images like it, or with `texts`, the
    texts of that collection that describe it."""
    service, data = service_of(request), await request.body()

    def run() -> Answer:
        v = service.embed(uploads.from_bytes(data, service.settings, "the uploaded image"))
        return service.run(Ask(vector=v, kind=IMAGE, k=k, texts=texts, collapse=collapse, min_score=min_score))

    return _answer(await run_in_threadpool(run), Links(request))


@router.post("/classify", response_model=ClassifyAnswer, summary="Zero-shot classification of one image")
async def classify(body: ClassifyBody, request: Request):
    service = service_of(request)

    def run():
        return service.classify(vector_of(service, body)[0], body.labels, body.templates)

    probs = await run_in_threadpool(run)
    return {"labels": [{"label": t, "probability": p} for t, p in probs.items()]}


@router.get("/info", summary="What the index holds")
async def info(request: Request) -> dict:
    return await run_in_threadpool(service_of(request).info)


@router.get("/image/{image_id}", summary="An indexed image's file (JPEG when a browser can't show it)",
            responses={200: {"content": {"image/*": {}}}})
async def image(image_id: int, request: Request):
    service = service_of(request)
    row = await run_in_threadpool(service.row, image_id)
    if row.time_s is None and Path(row.path).suffix.lower() in BROWSER_SUFFIXES:
        return FileResponse(await run_in_threadpool(service.file_of, row))
    return Response(await run_in_threadpool(_picture, service, row, service.settings.serve_image_px),
                    media_type="image/jpeg")


@router.get("/thumbnail/{image_id}", summary="A small JPEG of an indexed image",
            responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(image_id: int, request: Request):
    service = service_of(request)
    row = await run_in_threadpool(service.row, image_id)
    return Response(await run_in_threadpool(_picture, service, row, service.settings.thumbnail_px),
                    media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _picture(service: Service, row, px: int) -> bytes:
    try:
        return service.picture(row, px)
    except ImageError as e:
        raise Problem(404, f"image {row.id} can't be shown any more ({e}): run `clipsearch index` to update") from e


def _search(service: Service, body: SearchBody) -> Answer:
    given = [n for n in _SOURCES if getattr(body, n) is not None]
    if len(given) != 1:
        raise Problem(400, f"give one of {', '.join(_SOURCES)} (got {', '.join(given) or 'none'})")
    f = body.filter
    where = make_filter(after=f.after, before=f.before, camera=f.camera, place=f.place, near=f.near,
                        folders=f.folders, kind=f.type, min_size=f.min_size) if f else None
    common = dict(k=body.k, texts=body.texts, where=where or None, sort=body.sort, min_score=body.min_score,
                  nprobe=body.nprobe, rerank=body.rerank, collapse=body.collapse, parse_dates=body.parse_dates)
    if body.query is not None:
        if not body.query.strip():
            raise Problem(400, 'the query is empty: describe what you are looking for, e.g. "a red car"')
        return service.run(Ask(service.terms(body.query), **common))
    v, kind = vector_of(service, body)
    return service.run(Ask(vector=v, kind=kind, **common))


def vector_of(service: Service, body: QueryImage) -> tuple:
    """(D,) unit vector and its kind from the one image source a body gives."""
    s = service.settings
    if body.image is not None:
        return service.embed(uploads.from_base64(body.image, s)), IMAGE
    if body.image_id is not None:
        return service.stored_vector(body.image_id), IMAGE
    if body.image_url is not None:
        return service.embed(uploads.from_url(body.image_url, s, service.allow_url_fetch)), IMAGE
    if body.embedding is not None:
        return service.embedding(body.embedding), body.embedding_kind
    raise Problem(400, "give one of image, image_id, image_url or embedding")


def _answer(answer: Answer, links: Links) -> dict:
    u = answer.understood
    matches = []
    for m in answer.matches:
        d = m.to_dict()
        if hasattr(m.hit, "path"):
            d |= {"image_url": links.image(m.hit.id), "thumbnail_url": links.thumbnail(m.hit.id)}
        matches.append(d)
    return {"understood": {"query": describe_query(u.query), "filter": u.where.describe() if u.where else None,
                           "note": u.note}, "matches": matches}
