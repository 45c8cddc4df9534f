"""From ranked sentence ids to results: the merge of hits into one result per place (see
`merge`), and passages (the hit sentences with their neighbours, and where they sit)."""

from __future__ import annotations

from sift.search.merge import Merged, merge_walk
from sift.search.reader import IndexReader
from sift.search.results import Hit, SentenceHit

__all__ = ["build_hits", "select"]


def select(
    reader: IndexReader,
    ids: list[int],
    scores: dict[int, float],
    k: int,
    per_article: int,
    collapse: float | None,
    context: int,
    offset: int = 0,
) -> list[Merged]:
    """`k` results after the first `offset`: hits merged where their passages overlap or
    touch, at most `per_article` results an article; with `collapse`, a sentence whose words
    overlap a chosen hit's by that much (Jaccard) or more is listed under it (`also_in`)."""
    return merge_walk(reader, ids, scores, k, per_article, context, collapse, offset)


def build_hits(
    reader: IndexReader, chosen: list[Merged], context: int, first_rank: int = 1
) -> list[Hit]:
    heads = reader.heads({c.article_id for c in chosen})
    copies = reader.copies(set(heads))
    hits = []
    for rank, item in enumerate(chosen, first_rank):
        best = item.best.row
        head = heads[item.article_id]
        passage, p_start, p_end = reader.passage_between(item.article_id, item.first, item.last)
        also = [*copies.get(item.article_id, []), *item.also_in]
        hits.append(
            Hit(
                rank=rank,
                score=round(item.score, 4),
                article_id=item.article_id,
                title=head.title,
                source=head.source,
                url=head.url,
                published=head.published,
                sentence=best.text,
                start=best.start,
                end=best.end,
                passage=passage,
                passage_start=p_start,
                passage_end=p_end,
                hits=[
                    SentenceHit(start=h.row.start, end=h.row.end, score=round(h.score, 4))
                    for h in sorted(item.hits, key=lambda h: h.row.start)
                ],
                also_in=list(dict.fromkeys(also)),
            )
        )
    return hits
