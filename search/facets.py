"""Facets: how many matching articles each source and each month holds, counted over every
candidate of the ranking (not only the page shown), so they can serve as filters."""

from __future__ import annotations

from collections import Counter

from sift.search.filters import ArticleFilter
from sift.search.reader import IndexReader
from sift.search.results import FacetCount, Facets


def count_facets(reader: IndexReader, sentence_ids: list[int], flt: ArticleFilter) -> Facets:
    """Articles with a candidate sentence, and their identical copies (each an article of its
    own source and date), that pass the filter's article fields."""
    holders = sorted(set(reader.article_of(sentence_ids).values()))
    rows = reader.article_dates(holders, flt)
    sources = Counter(source for _, source, _ in rows)
    months = Counter(published[:7] if published else None for _, _, published in rows)
    newest_first = sorted((m for m in months if m is not None), reverse=True)
    return Facets(
        articles=len(rows),
        source=[
            FacetCount(value=v, count=n)
            for v, n in sorted(sources.items(), key=lambda kv: (kv[0] is None, -kv[1], kv[0] or ""))
        ],
        month=[  # newest first, undated last
            *(FacetCount(value=v, count=months[v]) for v in newest_first),
            *([FacetCount(value=None, count=months[None])] if None in months else []),
        ],
    )
