"""The data types of the reader side, shared by the CLI's --json output and the API."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from sift.index.manifest import EncoderInfo
from sift.index.records import iso_date
from sift.search.dates import half_life_hours
from sift.search.filters import ArticleFilter
from sift.search.query_syntax import ParsedQuery, parse_query

#: Hard ceilings, whatever the settings say; the settings may lower them.
MAX_K = 1000
MAX_CONTEXT = 50
MAX_QUERY_CHARS = 10_000


class SearchRequest(BaseModel):
    """A search: the query in plain words, how to rank, what to filter, what shape to return."""

    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description='The query, in plain words; "an exact phrase" must occur in the hit '
        "sentence, -word leaves out every article holding the word.",
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
    sort: Literal["relevance", "date"] = Field(
        default="relevance", description="relevance, or date: newest first (undated last)."
    )
    recency: str | None = Field(
        default=None,
        description="Blend age into the score with this half-life (30d, 12h, 2w, 6m, 1y); "
        "undated articles take the median factor.",
    )
    facets: bool = Field(
        default=False, description="Count the matching articles by source and by month."
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Control characters carry no meaning in a query; they become spaces.
        cleaned = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value).strip()
        if not cleaned:
            raise ValueError("query is empty")
        parse_query(cleaned)  # a query of exclusions alone has nothing to search for
        return cleaned

    def parsed(self) -> ParsedQuery:
        return parse_query(self.q)

    @field_validator("since", "until")
    @classmethod
    def _iso_date(cls, value: str | None, info: ValidationInfo) -> str | None:
        return iso_date(value, str(info.field_name)) if value else None

    @field_validator("recency")
    @classmethod
    def _half_life(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        half_life_hours(value)
        return value.strip().lower()

    @model_validator(mode="after")
    def _one_order(self) -> SearchRequest:
        if self.sort == "date" and self.recency:
            raise ValueError("recency blends age into relevance: it does not go with sort=date")
        return self

    @field_validator("meta")
    @classmethod
    def _key_value(cls, values: list[str]) -> list[str]:
        for item in values:
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"meta filters are key=value, got {item!r}")
        return values

    def article_filter(self) -> ArticleFilter:
        parsed = self.parsed()
        return ArticleFilter(
            sources=tuple(self.source),
            since=self.since,
            until=self.until,
            ids=tuple(self.ids),
            meta=tuple((k.strip(), v) for k, _, v in (m.partition("=") for m in self.meta)),
            phrases=parsed.phrases,
            excluded=parsed.excluded,
        )


class SentenceHit(BaseModel):
    """One hit sentence inside a passage: its offsets in the article's text, and its score."""

    start: int
    end: int
    score: float


class Hit(BaseModel):
    """One passage: the sentences that matched, with their neighbours and their article.
    Hits of one article whose passages would overlap or touch are one Hit."""

    rank: int
    score: float = Field(
        description="The best hit sentence's score. Higher ranks first; its scale depends on the "
        "mode: the cosine similarity of query and sentence in dense mode, the BM25 score in "
        "keyword mode, the fused score in hybrid mode (by default on [0, 1]: the weighted mean "
        "of the cosine, the BM25 and the article's BM25, each scaled to its list's best). "
        "Compare scores within one response, not across modes."
    )
    article_id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None
    sentence: str
    start: int = Field(description="Offset of the best hit sentence in the article's text.")
    end: int
    passage: str
    passage_start: int
    passage_end: int
    hits: list[SentenceHit] = Field(
        default_factory=list,
        description="Every hit sentence in the passage, in text order; the best is `sentence`.",
    )
    also_in: list[str] = Field(
        default_factory=list,
        description="Other articles with the same or a near-identical sentence (copies).",
    )


class RankedArticle(BaseModel):
    """An article in a ranking, with the fields a reader sees first."""

    rank: int
    score: float = Field(
        description="Higher ranks first. For articles ranked for a query (group=article): the "
        "reciprocal rank fusion of the article's own BM25 rank and the ranks of its best dense, "
        "keyword and fused sentences; for similar articles: how closely their sentences match."
    )
    article_id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None


class ArticleHit(RankedArticle):
    """An article ranked for the query (group=article), with its best passages."""

    passages: list[Hit]


class Recency(BaseModel):
    """How age was blended into the scores: score x 0.5 ** (age / half_life)."""

    half_life: str = Field(description="As asked, e.g. 30d.")
    half_life_hours: float
    counted_from: str = Field(
        description="Ages are counted from the newest dated candidate (or now, if sooner)."
    )
    undated: str = "scored with the median age factor of the dated candidates"


class FacetCount(BaseModel):
    value: str | None = Field(description="A source, or a month YYYY-MM; null: none given.")
    count: int


class Facets(BaseModel):
    """Matching articles (every candidate of the ranking, not only the page) by source and
    by month; identical copies count as articles of their own source and date."""

    articles: int
    source: list[FacetCount]
    month: list[FacetCount]


class SearchResponse(BaseModel):
    query: str
    k: int
    offset: int = 0
    mode: str = "hybrid"
    sort: str = "relevance"
    recency: Recency | None = None
    took_ms: float
    results: list[Hit] = Field(description="Passages, best first (empty when group=article).")
    articles: list[ArticleHit] | None = Field(
        default=None, description="Articles, best first, when group=article."
    )
    facets: Facets | None = Field(default=None, description="With facets=true.")


class Tie(BaseModel):
    """A passage of a similar article, and the sentence of the given article it matches."""

    passage: Hit
    sentence: str = Field(description="The given article's sentence that this passage matches.")
    start: int = Field(description="Offset of that sentence in the given article's text.")
    end: int


class SimilarArticle(RankedArticle):
    """An article near the given one: BERTScore-style F1 of their sentence vectors."""

    ties: list[Tie]


class SimilarResponse(BaseModel):
    article_id: str
    k: int
    took_ms: float
    copies: list[str] = Field(
        default_factory=list,
        description="Copies of the article (same or near-same text), left out.",
    )
    results: list[SimilarArticle]


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
