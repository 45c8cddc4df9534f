"""From ranked sentence ids to results: the per-article cap, near-duplicate collapse, and
passages (the hit sentence with its neighbours, and where it sits in its article)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sift.search.reader import IndexReader, SentenceRow
from sift.search.results import Hit

_TOKEN = re.compile(r"\w+")
_MIN_WORDS_FOR_OVERLAP = 5


@dataclass
class Chosen:
    row: SentenceRow
    score: float
    also_in: list[str] = field(default_factory=list)
    words: frozenset[str] = frozenset()
    key: str = ""


def select(
    reader: IndexReader,
    ids: list[int],
    scores: dict[int, float],
    want: int,
    per_article: int,
    collapse: float | None,
) -> list[Chosen]:
    """The first `want` sentences of `ids` that pass the per-article cap; with `collapse`, a
    sentence whose words overlap a chosen one's by that much (Jaccard) or more is listed under
    it (`also_in`) instead of taking a place of its own."""
    chosen: list[Chosen] = []
    per: dict[str, int] = {}
    for start in range(0, len(ids), 256):
        chunk = ids[start : start + 256]
        rows = reader.sentences(chunk)
        for sid in chunk:
            row = rows.get(sid)
            if row is None:  # removed by a commit since the ranking was read
                continue
            tokens = [t.lower() for t in _TOKEN.findall(row.text)]
            candidate = Chosen(row, scores[sid], words=frozenset(tokens), key=" ".join(tokens))
            if collapse is not None:
                twin = next((c for c in chosen if _same(c, candidate, collapse)), None)
                if twin is not None:
                    other = row.article_id
                    if other != twin.row.article_id and other not in twin.also_in:
                        twin.also_in.append(other)
                    continue
            if per.get(row.article_id, 0) >= per_article:
                continue
            per[row.article_id] = per.get(row.article_id, 0) + 1
            chosen.append(candidate)
            if len(chosen) >= want:
                return chosen
    return chosen


def _same(a: Chosen, b: Chosen, threshold: float) -> bool:
    if a.key == b.key:
        return True
    if min(len(a.words), len(b.words)) < _MIN_WORDS_FOR_OVERLAP:
        return False
    return len(a.words & b.words) / len(a.words | b.words) >= threshold


def build_hits(
    reader: IndexReader, chosen: list[Chosen], context: int, first_rank: int = 1
) -> list[Hit]:
    heads = reader.heads({c.row.article_id for c in chosen})
    copies = reader.copies(set(heads))
    hits = []
    for rank, item in enumerate(chosen, first_rank):
        row = item.row
        head = heads[row.article_id]
        passage, p_start, p_end = reader.passage(row.article_id, row.position, context)
        also = [*copies.get(row.article_id, []), *item.also_in]
        hits.append(
            Hit(
                rank=rank,
                score=round(item.score, 4),
                article_id=row.article_id,
                title=head.title,
                source=head.source,
                url=head.url,
                published=head.published,
                sentence=row.text,
                start=row.start,
                end=row.end,
                passage=passage,
                passage_start=p_start,
                passage_end=p_end,
                also_in=list(dict.fromkeys(also)),
            )
        )
    return hits
