"""The data types of the reader side, shared by the CLI's --json output and the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

#: Hard ceilings, whatever the settings say; the settings may lower them.
MAX_K = 1000
MAX_CONTEXT = 50
MAX_QUERY_CHARS = 10_000


class SearchRequest(BaseModel):
    """A search: the query in plain words and how many passages, of what shape, to return."""

    q: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="The query, in plain words."
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many passages to return.")
    context: int = Field(
        default=1, ge=0, le=MAX_CONTEXT, description="Sentences either side of the hit."
    )
    per_article: int = Field(
        default=2, ge=1, le=MAX_K, description="At most this many passages from one article."
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("query is empty")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in stripped):
            stripped = "".join(ch if ord(ch) >= 32 else " " for ch in stripped).strip()
        return stripped


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


class SearchResponse(BaseModel):
    query: str
    k: int
    took_ms: float
    results: list[Hit]


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


class IndexStats(BaseModel):
    index: str
    articles: int
    sentences: int
    model: str
    model_fingerprint: str
    dimension: int
    splitter: str
    vectors: str
    format_version: int
    generation: int
    created: str
    updated: str
    bytes_on_disk: int
