"""The data types of the reader side, shared by the CLI's --json output and the API."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sift.index.manifest import EncoderInfo
from sift.search.filters import ArticleFilter

#: Hard ceilings, whatever the settings say; the settings may lower them.
MAX_K = 1000
MAX_CONTEXT = 50
MAX_QUERY_CHARS = 10_000


class SearchRequest(BaseModel):
    """A search: the query in plain words, how to rank, what to filter, what shape to return."""

    q: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="The query, in plain words."
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results to return.")
    offset: int = Field(default=0, ge=0, le=MAX_K, description="Results to skip (pagination).")
    mode: Literal["hybrid", "dense", "keyword"] = Field(
        default="hybrid", description="hybrid: dense and keyword fused; or either alone."
    )
    context: int = Field(
        default=1, ge=0, le=MAX_CONTEXT, description="Sentences either side of the hit."
    )
    per_article: int = Field(
        default=2, ge=1, le=MAX_K, description="At most this many passages from one article."
    )
    group: Literal["passage", "article"] = Field(
        default="passage", description="article: rank articles, each with its best passages."
    )
    collapse: bool = Field(
        default=True, description="Fold near-identical sentences of different articles into one."
    )
    source: list[str] = Field(default_factory=list, description="Only articles from these sources.")
    since: str | None = Field(default=None, description="Only articles published on or after.")
    until: str | None = Field(default=None, description="Only articles published on or before.")
    ids: list[str] = Field(default_factory=list, description="Only these articles.")
    meta: list[str] = Field(
        default_factory=list, description="Only articles whose metadata has key=value."
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Control characters carry no meaning in a query; they become spaces.
        cleaned = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value).strip()
        if not cleaned:
            raise ValueError("query is empty")
        return cleaned

    @field_validator("since", "until")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an ISO date like 2024-06-19, got {value!r}") from None
        return value

    @field_validator("meta")
    @classmethod
    def _key_value(cls, values: list[str]) -> list[str]:
        for item in values:
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"meta filters are key=value, got {item!r}")
        return values

    def article_filter(self) -> ArticleFilter:
        return ArticleFilter(
            sources=tuple(self.source),
            since=self.since,
            until=self.until,
            ids=tuple(self.ids),
            meta=tuple((k.strip(), v) for k, _, v in (m.partition("=") for m in self.meta)),
        )


class Hit(BaseModel):
    """One passage: the sentence that matched, with its neighbours and its article."""

    rank: int
    score: float = Field(description="Cosine similarity of the query and the hit sentence.")
    article_id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None
    sentence: str
    start: int = Field(description="Offset of the hit sentence in the article's text.")
    end: int
    passage: str
    passage_start: int
    passage_end: int
    also_in: list[str] = Field(
        default_factory=list,
        description="Other articles with the same or a near-identical sentence (copies).",
    )


class ArticleHit(BaseModel):
    """An article ranked for the query (group=article), with its best passages."""

    rank: int
    score: float
    article_id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None
    passages: list[Hit]


class SearchResponse(BaseModel):
    query: str
    k: int
    offset: int = 0
    mode: str = "hybrid"
    took_ms: float
    results: list[Hit] = Field(description="Passages, best first (empty when group=article).")
    articles: list[ArticleHit] | None = Field(
        default=None, description="Articles, best first, when group=article."
    )


class ArticleView(BaseModel):
    """A stored article, as `sift show` and `GET /articles/{id}` return it."""

    id: str
    title: str | None
    text: str
    url: str | None
    source: str | None
    published: str | None
    metadata: dict[str, Any]
    sentences: int
    added: str
    updated: str
    duplicate_of: str | None = Field(
        default=None, description="Id of the article with the same text, which holds it."
    )


class IndexStats(BaseModel):
    index: str
    articles: int
    sentences: int
    model: str
    model_fingerprint: str
    dimension: int
    encoder: EncoderInfo | None = Field(
        default=None,
        description="What embedded the latest vectors: backend, precision, why, sift version.",
    )
    splitter: str
    vectors: str
    format_version: int
    generation: int
    created: str
    updated: str
    bytes_on_disk: int
