"""The native JSON API's bodies, as OpenAPI shows them at /docs. Defaults come from `Settings`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clipsearch.config import Settings

_S = Settings()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class QueryImage(_Body):
    """Where a query vector comes from: give exactly one of these (or `query` where it is allowed)."""

    image: str | None = Field(None, description="An image file's bytes, base64-encoded.")
    image_id: int | None = Field(None, description="An indexed image's id (from a result): its stored vector.")
    image_url: str | None = Field(None, description="An http(s) URL to fetch (only with --allow-url-fetch).")
    embedding: list[float] | None = Field(None, description="A vector of the index model's dim (normalised here).")
    embedding_kind: Literal["image", "text"] = Field(
        "image", description="What `embedding` was made from: decides whether scores are calibrated.")


class FilterBody(_Body):
    """Which images may be returned, as `clipsearch query`'s filter options."""

    after: str | None = Field(None, description="Taken on or after: 2023, 2023-07 or 2023-07-14.")
    before: str | None = Field(None, description="Taken on or before (its whole year, month or day).")
    camera: str | None = Field(None, description="Camera make, model or lens contains this (any case).")
    place: str | None = Field(None, description="City, region or country contains this (any case).")
    near: str | None = Field(None, description="LAT,LON[,KM]: taken within KM (default 10).")
    folders: list[str] = Field([], description="Only images under these folders (paths on the server).")
    type: Literal["photo", "video", "raw"] | None = None
    min_size: str | None = Field(None, description="WxH: at least W pixels wide and H high.")


class SearchBody(QueryImage):
    """A search: algebra words (`query`) or one query image/vector; images, or a text collection."""

    query: str | None = Field(None, description='Words as `clipsearch query` reads them: "a red car", '
                                                '"2:beach - people", image terms inside the indexed folders.',
                              examples=["a dog on a beach"])
    k: int = Field(_S.top_k, ge=1, le=_S.serve_max_k, description="How many results.")
    texts: str | None = Field(None, description='Rank the texts of this collection instead ("" for the only one).')
    filter: FilterBody | None = None
    sort: Literal["score", "date"] = "score"
    min_score: float | None = Field(None, ge=0, le=1, description="Drop results calibrated below this.")
    collapse: bool = Field(False, description="One image per near-duplicate group, with the group's size.")
    nprobe: int | None = Field(None, ge=1, description="IVF lists to visit (approximate index only).")
    rerank: int | None = Field(None, ge=1, description="Re-score rerank x k candidates exactly.")
    parse_dates: bool = Field(True, description='Read dates in the words ("beach July 2023") as a filter.')


class ClassifyBody(QueryImage):
    """Zero-shot classification of one image (uploaded, indexed or a vector) against labels."""

    labels: list[str] = Field(..., min_length=2, examples=[["cat", "dog", "car"]])
    templates: list[str] | None = Field(None, description='Prompt templates with {} for the label '
                                                          '[default: the CLIP paper\'s ensemble].')


class Understood(BaseModel):
    query: str | None = Field(None, description="The words searched (dates typed into them taken out).")
    filter: str | None = Field(None, description="The filter applied, in words.")
    note: str | None = Field(None, description="What was read from the words, e.g. a date.")


class SearchAnswer(BaseModel):
    understood: Understood
    matches: list[dict[str, Any]] = Field(description="Best first: an image's id, path, score, size and "
                                                      "metadata, its image_url and thumbnail_url (or a text's id, "
                                                      "text, score); `calibrated` for cross-modal matches.")


class Label(BaseModel):
    label: str
    probability: float


class ClassifyAnswer(BaseModel):
    labels: list[Label]
