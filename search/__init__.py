"""The reader side of sift: open an index, rank sentences, build passages (`engine.Sift`)."""

from sift.errors import InvalidRequest
from sift.search.engine import Sift
from sift.search.results import ArticleView, Hit, IndexStats, SearchRequest, SearchResponse

__all__ = [
    "ArticleView",
    "Hit",
    "IndexStats",
    "InvalidRequest",
    "SearchRequest",
    "SearchResponse",
    "Sift",
]
