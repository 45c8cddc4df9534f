"""The reader side of sift: open an index, rank sentences, build passages; and the CLI."""

from search.engine import InvalidRequest, Sift
from search.results import ArticleView, Hit, IndexStats, SearchRequest, SearchResponse

__all__ = [
    "ArticleView",
    "Hit",
    "IndexStats",
    "InvalidRequest",
    "SearchRequest",
    "SearchResponse",
    "Sift",
]
