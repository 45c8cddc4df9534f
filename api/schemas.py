"""Request and response bodies that only the API has; search types come from `search.results`."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sift.index.writer import IndexSummary
from sift.search.results import SearchRequest, SearchResponse


class ErrorBody(BaseModel):
    """Every error the API returns has this shape."""

    error: str = Field(description="A stable code: invalid_request, not_found, ...")
    message: str


class FailureView(BaseModel):
    where: str
    reason: str


class IndexResult(BaseModel):
    """What a write changed."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    failed: list[FailureView]
    sentences: int = Field(description="Sentences embedded by this request.")
    took_ms: float

    @classmethod
    def of(cls, summary: IndexSummary) -> IndexResult:
        return cls(
            added=summary.added,
            updated=summary.updated,
            unchanged=summary.unchanged,
            removed=summary.removed,
            failed=[FailureView(**f.as_dict()) for f in summary.failed],
            sentences=summary.sentences,
            took_ms=round(summary.seconds * 1000, 2),
        )


class BatchSearch(BaseModel):
    """Several searches answered together, with one model call for all their queries."""

    searches: list[SearchRequest] = Field(min_length=1, max_length=1000)


class BatchResults(BaseModel):
    results: list[SearchResponse] = Field(description="One response per search, in order.")


class Health(BaseModel):
    status: str
    index: str
    articles: int
    sentences: int
    model: str
