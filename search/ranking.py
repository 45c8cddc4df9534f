"""Ranking sentences and articles: dense (FAISS), keyword (tantivy BM25) and their fusion.

Filters narrow both candidate lists inside the index (an id selector for FAISS, an id set for
tantivy) before anything is ranked, so a filtered page is as full as the matches allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sift.search.filters import ArticleFilter
from sift.search.fusion import Scored, convex, ranked, rrf
from sift.search.keyword import query_terms
from sift.search.reader import IndexReader
from sift.settings import FusionWeights, Settings

#: How many of the best articles by their own BM25 lend their rank to their sentences.
ARTICLE_DEPTH = 50
#: Threads for the keyword ranking of hybrid searches, beside the dense one (both release the
#: GIL); more than the cores, as a server's searches come in together.
_SIDE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sift-keyword")


@dataclass
class Ranking:
    """Sentence ids best first, each with its score, and the lists that fed them."""

    ids: list[int]
    scores: dict[int, float]
    dense: list[int] = field(default_factory=list)
    keyword: list[int] = field(default_factory=list)
    articles: list[str] = field(default_factory=list)  # by the article's own BM25
    exhaustive: bool = True  # False: a deeper look could find more


def rank_sentences(
    reader: IndexReader,
    settings: Settings,
    query: str,
    vector: np.ndarray | None,
    mode: str,
    flt: ArticleFilter,
    depth: int,
    articles: bool | None = None,
) -> Ranking:
    """`articles`: also rank whole articles by their own BM25 (default: when hybrid fusion
    uses that list; grouping by article wants it in keyword mode too)."""
    weights = settings.weights()
    if articles is None:
        articles = mode == "hybrid" and weights.article > 0
    allowed = reader.allowed_sentences(flt) if flt else None
    words = query_terms(query) if mode in ("hybrid", "keyword") else []

    # The database is read here, in the search's snapshot; the side thread reads tantivy only.
    allowed_articles = reader.allowed_articles(flt) if articles and flt else None

    def keyword_side() -> tuple[list[int], list[float], list[int], list[float]]:
        found, scores = reader.keyword_sentences(words, depth, allowed)
        nums, by_article = (
            reader.keyword_article_hits(words, ARTICLE_DEPTH, allowed_articles)
            if articles
            else ([], [])
        )
        return found, scores, nums, by_article

    keyword: Future[tuple[list[int], list[float], list[int], list[float]]] | None = None
    if words and mode == "hybrid" and vector is not None:
        # The keyword rankings (sentences, then articles) run in tantivy while FAISS runs here:
        # both release the GIL, so a hybrid search waits for the slower, not for their sum.
        keyword = _SIDE.submit(keyword_side)
    dense_ids: list[int] = []
    dense_scores: list[float] = []
    if mode in ("hybrid", "dense") and vector is not None:
        if allowed is None:
            scores, ids = reader.nearest(vector, depth)
        else:
            scores, ids = reader.nearest_among(vector, depth, allowed)
        dense_ids, dense_scores = [int(i) for i in ids], [float(s) for s in scores]
    keyword_ids: list[int] = []
    keyword_scores: list[float] = []
    article_scores: dict[str, float] = {}
    articles_complete = True  # every article holding a query word is in article_scores
    if words:
        keyword_ids, keyword_scores, nums, by_num = (
            keyword.result() if keyword is not None else keyword_side()
        )
        article_scores, articles_complete = reader.own_articles(nums, by_num, ARTICLE_DEPTH)
    article_ids = list(article_scores)

    if mode == "dense":
        return Ranking(
            dense_ids,
            dict(zip(dense_ids, dense_scores, strict=True)),
            dense_ids,
            exhaustive=len(dense_ids) < depth,
        )
    if mode == "keyword":
        return Ranking(
            keyword_ids,
            dict(zip(keyword_ids, keyword_scores, strict=True)),
            keyword=keyword_ids,
            articles=article_ids,
            exhaustive=len(keyword_ids) < depth,
        )
    candidates = list(dict.fromkeys([*dense_ids, *keyword_ids]))
    owner = reader.article_of(candidates) if article_ids else {}
    if settings.fusion == "convex":
        fused = fuse_convex(
            dict(zip(dense_ids, dense_scores, strict=True)),
            dict(zip(keyword_ids, keyword_scores, strict=True)),
            len(keyword_ids) < depth,
            article_scores,
            articles_complete,
            owner,
            weights,
        )
    else:
        fused = rrf([dense_ids, keyword_ids], [weights.dense, weights.keyword], settings.rrf_k)
        # Article-level evidence: a sentence inherits a share of its article's BM25 rank.
        article_rank = {a: r for r, a in enumerate(article_ids, 1)}
        for sid in fused:
            rank = article_rank.get(owner.get(sid, ""))
            if rank is not None:
                fused[sid] += weights.article / (settings.rrf_k + rank)
    first_seen = {sid: i for i, sid in enumerate(candidates)}
    # Hybrid looks at a fixed depth, so that pages of one query never disagree.
    return Ranking(ranked(fused, first_seen), fused, dense_ids, keyword_ids, article_ids)


def fuse_convex(
    dense: dict[int, float],
    keyword: dict[int, float],
    keyword_complete: bool,
    articles: dict[str, float],
    articles_complete: bool,
    owner: Mapping[int, str],
    weights: FusionWeights,
) -> dict[int, float]:
    """Hybrid's default fusion of sentence ids: scores, not ranks. The cosine, the sentence's
    BM25 and its article's BM25 (`owner`: each sentence's article), each on [0, 1] from its
    least possible value to the list's best, in a weighted mean (`fusion.convex`)."""
    lists = [
        # Every sentence has a cosine: one the dense list left out (past its depth, or not
        # probed by an IVF index) is taken as no better than its worst.
        Scored(dense, -1.0, complete=False),
        # BM25 is 0 without a query word: a list shorter than asked holds every match.
        Scored(keyword, 0.0, complete=keyword_complete),
        Scored(articles, 0.0, complete=articles_complete, key=owner),
    ]
    candidates = list(dict.fromkeys([*dense, *keyword]))
    return convex(candidates, lists, [weights.dense, weights.keyword, weights.article])


def rank_articles(
    ranking: Ranking, owner: dict[int, str], settings: Settings
) -> list[tuple[str, float]]:
    """Articles for "which articles are about X", best first with their scores: fused from
    their own BM25 rank and the ranks of their best dense and best keyword sentences, not from
    one sentence's score alone."""

    def by_best_sentence(ids: list[int]) -> list[str]:
        return list(dict.fromkeys(owner[s] for s in ids if s in owner))

    best_fused = by_best_sentence(ranking.ids)
    lists = [
        by_best_sentence(ranking.dense),
        by_best_sentence(ranking.keyword),
        ranking.articles,
        best_fused,
    ]
    # Measured on SQuAD paragraphs (1/5 of the questions): MRR@10 0.8956 with the first three
    # lists, 0.8975 with the fused sentence ranking as a fourth.
    # Article ranks fuse by RRF whatever fuses sentences: its weights, not convex's.
    rrf_weights = settings.weights("rrf")
    fused = rrf(lists, [rrf_weights.dense, rrf_weights.keyword, 1.0, 1.0], settings.rrf_k)
    order = {a: i for i, a in enumerate(best_fused)}
    return [(a, fused[a]) for a in ranked(fused, order)]
