"""sift: semantic passage search over news articles.

    import sift

    with sift.open("~/news-index") as engine:
        engine.add({"id": "a1", "title": "Pact signed", "text": "The two leaders signed ..."})
        for hit in engine.search("who signed the defence pact", k=3).results:
            print(hit.score, hit.article_id, hit.passage)

The rooms: `sift.index` writes an index, `sift.search` reads it (the engine is
`sift.search.engine.Sift`), `sift.api` serves it over HTTP, `sift.cli` is the command line.
`sift.settings`, `sift.errors` and `sift.logs` are shared by all of them.

Names are imported on first use, so `import sift` stays cheap for the command line.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sift.errors import SiftError
    from sift.index.records import Article
    from sift.index.writer import IndexSummary
    from sift.search.engine import Sift
    from sift.search.results import Hit, IndexStats, SearchRequest, SearchResponse
    from sift.settings import Settings

__all__ = [
    "Article",
    "Hit",
    "IndexStats",
    "IndexSummary",
    "SearchRequest",
    "SearchResponse",
    "Settings",
    "Sift",
    "SiftError",
    "open",
]

_LAZY = {
    "Article": "sift.index.records",
    "Hit": "sift.search.results",
    "IndexStats": "sift.search.results",
    "IndexSummary": "sift.index.writer",
    "SearchRequest": "sift.search.results",
    "SearchResponse": "sift.search.results",
    "Settings": "sift.settings",
    "Sift": "sift.search.engine",
    "SiftError": "sift.errors",
}


def open(path: str | Path | None = None, **settings: Any) -> Sift:
    """The engine over the index at `path` (default: SIFT_INDEX, else the user data dir),
    with any other setting given by name (`model=...`, `rrf_k=...`). A new index is made by
    its first `add()`. Use it as a context manager, or `close()` it."""
    from sift.search.engine import Sift
    from sift.settings import Settings

    if path is not None:
        settings["index"] = Path(path)
    return Sift(Settings(**settings))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sift' has no attribute {name!r}")
