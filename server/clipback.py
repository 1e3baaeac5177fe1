"""clip-retrieval compatibility: /knn-service, /indices-list and /metadata as `clip back` answers them.

So that `clip_retrieval.clip_client.ClipClient` and clip-front work unchanged. ClipClient posts its
JSON with no Content-Type and every key, unused ones null (read as JSON all the same: bodies.py).
The first of `text`, `image` (base64 of a file), `image_url` and `embedding_input` is the query; the
text is one literal text (no algebra, no dates), as clip back reads it. `num_images` is k,
`modality` "image" searches the images and "text" the index's text collection, `deduplicate`
collapses near-duplicate images. `num_result_ids`, `use_mclip`, `use_safety_model`,
`use_violence_detector`, `aesthetic_score` and `aesthetic_weight` are accepted and ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from clipsearch.config import Settings
from clipsearch.search.algebra import IMAGE, TEXT, Term
from clipsearch.search.matcher import Request as Ask
from clipsearch.server import uploads
from clipsearch.server.problems import Problem
from clipsearch.server.routes import Links, service_of
from clipsearch.server.service import Service

router = APIRouter(tags=["clip-retrieval"])
_S = Settings()


class KnnQuery(BaseModel):
    """ClipClient's request (clip back's keys; unknown keys are ignored as clip back ignores them)."""

    model_config = ConfigDict(extra="ignore")
    text: str | None = None
    image: str | None = Field(None, description="base64 of an image file's bytes")
    image_url: str | None = Field(None, description="fetched only with --allow-url-fetch")
    embedding_input: list[float] | None = None
    modality: Literal["image", "text"] = "image"
    num_images: int = Field(_S.top_k, ge=1, le=_S.serve_max_k)
    indice_name: str | None = None
    deduplicate: bool | None = False
    # Accepted and ignored: this server has no safety or violence model, no aesthetic embeddings,
    # no multilingual text tower of its own (pick a multilingual model instead), and answers
    # num_images results.
    num_result_ids: int | None = None
    use_mclip: bool | None = None
    use_safety_model: bool | None = None
    use_violence_detector: bool | None = None
    aesthetic_score: int | str | None = None
    aesthetic_weight: float | str | None = None


class MetadataQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ids: list[int] = Field(max_length=_S.serve_max_k)
    indice_name: str | None = None


@router.get("/indices-list", summary="The indices this server answers for (clip back)")
async def indices_list(request: Request) -> list[str]:
    return [service_of(request).name]


@router.post("/knn-service", summary="Nearest neighbours, as clip back answers them")
async def knn_service(query: KnnQuery, request: Request) -> list[dict[str, Any]]:
    return await run_in_threadpool(_knn, service_of(request), query, Links(request))


@router.post("/metadata", summary="Metadata of images by id (clip back)")
async def metadata(query: MetadataQuery, request: Request) -> list[dict[str, Any]]:
    service = service_of(request)
    _check_index(service, query.indice_name)
    rows = await run_in_threadpool(service.state.index.images.rows, query.ids)
    links = Links(request)
    return [{"id": i, "metadata": {"image_path": rows[i].path, "url": links.image(i)} if i in rows else {}}
            for i in query.ids]


def _check_index(service: Service, name: str | None) -> None:
    if name is not None and name != service.name:
        raise Problem(404, f"no index {name!r} here: this server has {service.name!r} (GET /indices-list)")


def _knn(service: Service, q: KnnQuery, links: Links) -> list[dict]:
    _check_index(service, q.indice_name)
    texts = "" if q.modality == "text" else None
    common = dict(k=q.num_images, texts=texts, collapse=bool(q.deduplicate) and texts is None)
    if q.text:  # clip back skips an empty text too
        answer = service.run(Ask([Term(TEXT, q.text)], parse_dates=False, **common))
    else:
        answer = service.run(Ask(vector=_vector(service, q), kind=IMAGE, **common))
    out = []
    for m in answer.matches:
        if hasattr(m.hit, "path"):
            out.append({"id": m.hit.id, "similarity": m.hit.score, "image_path": m.hit.path,
                        "url": links.image(m.hit.id)})
        else:
            out.append({"id": m.hit.id, "similarity": m.hit.score, "caption": m.hit.text})
    return out


def _vector(service: Service, q: KnnQuery):
    s = service.settings
    if q.image is not None:
        return service.embed(uploads.from_base64(q.image, s))
    if q.image_url is not None:
        return service.embed(uploads.from_url(q.image_url, s, service.allow_url_fetch))
    if q.embedding_input is not None:
        return service.embedding(q.embedding_input)
    raise Problem(400, "the query has nothing in it: give text, image (base64), image_url or embedding_input")
