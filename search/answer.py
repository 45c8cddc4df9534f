"""Answering one search over an open index: rank, arrange (by relevance, by date, or with
recency blended in), walk the ranking into a page of merged passages, count facets."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from typing import TypeVar

import numpy as np
from sift.search.dates import blend_recency, by_date, half_life_hours
from sift.search.facets import count_facets
from sift.search.filters import ArticleFilter
from sift.search.merge import Merged
from sift.search.passages import build_hits, select
from sift.search.ranking import rank_articles, rank_sentences
from sift.search.reader import IndexReader
from sift.search.results import (
    ArticleHit,
    Facets,
    Hit,
    Recency,
    SearchRequest,
    SearchResponse,
)
from sift.settings import Settings

T = TypeVar("T", bound=Hashable)


def _response(
    request: SearchRequest,
    hits: list[Hit],
    articles: list[ArticleHit] | None = None,
    facets: Facets | None = None,
    recency: Recency | None = None,
) -> SearchResponse:
    """took_ms is filled in by the caller, which times the whole answer."""
    return SearchResponse(
        query=request.q,
        k=request.k,
        offset=request.offset,
        mode=request.mode,
        sort=request.sort,
        recency=recency,
        took_ms=0.0,
        results=hits,
        articles=articles,
        facets=facets,
    )


def _arrange(
    request: SearchRequest,
    items: list[T],
    scores: dict[T, float],
    published: Callable[[list[T]], dict[T, str | None]],
) -> tuple[list[T], dict[T, float], Recency | None]:
    """The ranking as asked: by relevance, newest first, or with age blended in (and how)."""
    if request.sort == "date":
        return by_date(items, scores, published(items)), scores, None
    if request.recency:
        hours = half_life_hours(request.recency)
        now = datetime.now(timezone.utc)
        order, blended, counted_from = blend_recency(items, scores, published(items), hours, now)
        recency = Recency(
            half_life=request.recency,
            half_life_hours=hours,
            counted_from=counted_from.isoformat(timespec="seconds"),
        )
        return order, blended, recency
    return items, scores, None


def answer(
    reader: IndexReader, settings: Settings, request: SearchRequest, vector: np.ndarray | None
) -> SearchResponse:
    """One search's response, from its query vector (None in keyword mode)."""
    flt = request.article_filter()
    text = request.parsed().text  # the words and phrases, without their syntax
    want = request.offset + request.k
    collapse = settings.collapse_similarity if request.collapse else None
    if request.group == "article":
        return _answer_articles(reader, settings, request, vector, flt)
    # Hybrid looks at a fixed depth, so pages of one query never disagree; dense and
    # keyword orders do not change with depth, so they may look as deep as a page needs.
    depth = settings.candidates if request.mode == "hybrid" else max(settings.candidates, want)
    while True:
        ranking = rank_sentences(reader, settings, text, vector, request.mode, flt, depth)
        ids, scores, recency = _arrange(request, ranking.ids, ranking.scores, reader.published_of)
        page = select(
            reader,
            ids,
            scores,
            request.k,
            request.per_article,
            collapse,
            request.context,
            request.offset,
        )
        # The per-article cap, merging and the collapse can leave a page short: look
        # deeper while a deeper look can find more (dense and keyword orders do not change
        # with depth).
        if len(page) >= request.k or ranking.exhaustive or request.mode == "hybrid":
            break
        depth *= 4
    facets = count_facets(reader, ranking.ids, flt) if request.facets else None
    hits = build_hits(reader, page, request.context, request.offset + 1)
    return _response(request, hits, facets=facets, recency=recency)


def _answer_articles(
    reader: IndexReader,
    settings: Settings,
    request: SearchRequest,
    vector: np.ndarray | None,
    flt: ArticleFilter,
) -> SearchResponse:
    depth = max(settings.candidates, (request.offset + request.k) * 10)
    ranking = rank_sentences(
        reader,
        settings,
        request.parsed().text,
        vector,
        request.mode,
        flt,
        depth,
        articles=request.mode != "dense",
    )
    owner = reader.article_of(ranking.ids)
    ranked_articles = rank_articles(ranking, owner, settings)

    def published(ids: list[str]) -> dict[str, str | None]:
        return {a: h.published for a, h in reader.heads(set(ids)).items()}

    order, article_scores, recency = _arrange(
        request, [a for a, _ in ranked_articles], dict(ranked_articles), published
    )
    ordered = [(a, article_scores[a]) for a in order]
    page = ordered[request.offset : request.offset + request.k]
    wanted = {a for a, _ in page}
    candidates = [sid for sid in ranking.ids if owner.get(sid) in wanted]
    # Articles found by their own text alone: their sentences by the query vector.
    found = {owner[sid] for sid in candidates}
    if missing := [a for a in wanted if a not in found]:
        ids, _, vectors = reader.sentence_vectors(missing)
        order = np.argsort(-(vectors @ vector)) if vector is not None else range(len(ids))
        # With a phrase, a passage is only where the phrase is.
        keep = set(reader.allowed_sentences(flt).tolist()) if flt.phrases else None
        candidates += [ids[i] for i in order if keep is None or ids[i] in keep]
    # Each article's passages: the same walk, with no page to fill.
    merged = select(
        reader,
        candidates,
        {i: ranking.scores.get(i, 0.0) for i in candidates},
        len(candidates) + 1,
        request.per_article,
        None,
        request.context,
    )
    best: dict[str, list[Merged]] = {}
    for item in merged:
        best.setdefault(item.article_id, []).append(item)
    heads = reader.heads(wanted)
    results = []
    for rank, (article_id, score) in enumerate(page, request.offset + 1):
        chosen = best.get(article_id, [])
        head = heads[article_id]
        results.append(
            ArticleHit(
                rank=rank,
                score=round(score, 4),
                article_id=article_id,
                title=head.title,
                source=head.source,
                url=head.url,
                published=head.published,
                passages=build_hits(reader, chosen, request.context),
            )
        )
    facets = count_facets(reader, ranking.ids, flt) if request.facets else None
    return _response(request, [], results, facets, recency)
