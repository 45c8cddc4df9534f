"""The routes: parse, call the engine, return a typed response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query

from api.deps import EngineDep
from api.schemas import ErrorBody, Health, IndexResult
from index.records import Article
from index.store import IndexNotFound
from search.results import ArticleView, IndexStats, SearchRequest, SearchResponse

#: Most articles one POST /articles may carry.
MAX_BATCH = 1000

errors = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
router = APIRouter(responses=errors)  # type: ignore[arg-type]


@router.get("/health", operation_id="health", tags=["meta"])
def health(engine: EngineDep) -> Health:
    try:
        stats = engine.stats()
    except IndexNotFound:
        return Health(
            status="empty",
            index=str(engine.directory),
            articles=0,
            sentences=0,
            model=engine.embedder.name,
        )
    return Health(
        status="ok",
        index=stats.index,
        articles=stats.articles,
        sentences=stats.sentences,
        model=stats.model,
    )


@router.get("/stats", operation_id="stats", tags=["meta"])
def stats(engine: EngineDep) -> IndexStats:
    return engine.stats()


@router.get("/search", operation_id="search", tags=["search"])
def search_get(engine: EngineDep, request: Annotated[SearchRequest, Query()]) -> SearchResponse:
    """Passages that answer `q`, best first."""
    return engine.search(request)


@router.post("/search", operation_id="search_post", tags=["search"])
def search_post(engine: EngineDep, request: SearchRequest) -> SearchResponse:
    """The same as GET /search, with the request as a JSON body."""
    return engine.search(request)


@router.post("/articles", operation_id="add_articles", tags=["articles"])
def add_articles(
    engine: EngineDep,
    articles: Annotated[Article | list[Article], Body(description="One article or a list.")],
) -> IndexResult:
    """Index articles: new ones are added, changed ones replaced, unchanged ones left alone."""
    batch = articles if isinstance(articles, list) else [articles]
    if not batch:
        raise HTTPException(422, "no articles in the request")
    if len(batch) > MAX_BATCH:
        raise HTTPException(413, f"at most {MAX_BATCH} articles per request, got {len(batch)}")
    return IndexResult.of(engine.index_articles(batch))


@router.get("/articles/{article_id:path}", operation_id="get_article", tags=["articles"])
def get_article(engine: EngineDep, article_id: str) -> ArticleView:
    article = engine.article(article_id)
    if article is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    return article


@router.delete("/articles/{article_id:path}", operation_id="delete_article", tags=["articles"])
def delete_article(engine: EngineDep, article_id: str) -> IndexResult:
    if engine.article(article_id) is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    return IndexResult.of(engine.remove([article_id]))
