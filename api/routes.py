"""The routes: parse, call the engine, return a typed response.

Four routers, so `create_app` can put the API key on exactly the routes that need it:
`meta` (always open), `reads` (open unless search_needs_key), `writes` (need the key when one
is set) and `ops` (metrics, left out of the OpenAPI document).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from sift.api.deps import BatcherDep, EngineDep, MetricsDep, SettingsDep
from sift.api.limits import check_batch
from sift.api.metrics import CONTENT_TYPE
from sift.api.schemas import BatchResults, BatchSearch, ErrorBody, Health, IndexResult
from sift.errors import IndexNotFound
from sift.index.records import Article
from sift.search.results import (
    MAX_CONTEXT,
    MAX_K,
    ArticleView,
    IndexStats,
    SearchRequest,
    SearchResponse,
    SimilarResponse,
)

ERROR = {"model": ErrorBody}
errors: dict[int | str, dict[str, Any]] = {s: ERROR for s in (400, 404, 409, 422, 503)}

meta = APIRouter(responses=errors)
reads = APIRouter(responses=errors)
writes = APIRouter(responses=errors)
ops = APIRouter(include_in_schema=False)


@meta.get("/health", operation_id="health", tags=["meta"])
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


@reads.get("/stats", operation_id="stats", tags=["meta"])
def stats(engine: EngineDep) -> IndexStats:
    return engine.stats()


@reads.get("/search", operation_id="search", tags=["search"])
async def search_get(
    batcher: BatcherDep, metrics: MetricsDep, request: Annotated[SearchRequest, Query()]
) -> SearchResponse:
    """Passages that answer `q`, best first. Concurrent searches share one model call."""
    with metrics.timing_search():
        return await batcher.search(request)


@reads.post("/search", operation_id="search_post", tags=["search"], responses={413: ERROR})
async def search_post(
    batcher: BatcherDep, metrics: MetricsDep, request: SearchRequest
) -> SearchResponse:
    """The same as GET /search, with the request as a JSON body."""
    with metrics.timing_search():
        return await batcher.search(request)


@reads.post("/search/batch", operation_id="search_batch", tags=["search"], responses={413: ERROR})
def search_batch(engine: EngineDep, metrics: MetricsDep, batch: BatchSearch) -> BatchResults:
    """Many searches at once: the same answers as one by one, with one model call."""
    with metrics.timing_search():
        return BatchResults(results=engine.search_batch(batch.searches))


@reads.get(
    "/articles/{article_id:path}/similar", operation_id="similar_articles", tags=["articles"]
)
def similar_articles(
    engine: EngineDep,
    article_id: str,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    context: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 1,
    per_article: Annotated[int, Query(ge=1, le=MAX_K)] = 2,
) -> SimilarResponse:
    """The articles nearest one article (copies of it left out), with the passages that tie
    them. Registered before GET /articles/{id}, whose id may hold slashes."""
    response = engine.similar(article_id, k, context, per_article)
    if response is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    return response


@reads.get("/articles/{article_id:path}", operation_id="get_article", tags=["articles"])
def get_article(engine: EngineDep, article_id: str) -> ArticleView:
    article = engine.article(article_id)
    if article is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    return article


@writes.post("/articles", operation_id="add_articles", tags=["articles"], responses={413: ERROR})
def add_articles(
    engine: EngineDep,
    settings: SettingsDep,
    articles: Annotated[Article | list[Article], Body(description="One article or a list.")],
) -> IndexResult:
    """Index articles: new ones are added, changed ones replaced, unchanged ones left alone."""
    batch = articles if isinstance(articles, list) else [articles]
    check_batch(batch, settings)
    summary = engine.index_articles(batch)
    if summary.sentences:
        engine.prepare_queries()  # once per model: the export the first search would make
    return IndexResult.of(summary)


@writes.delete("/articles/{article_id:path}", operation_id="delete_article", tags=["articles"])
def delete_article(engine: EngineDep, article_id: str) -> IndexResult:
    if engine.article(article_id) is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    return IndexResult.of(engine.remove([article_id]))


@ops.get("/metrics")
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
