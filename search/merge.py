"""One result per place: hit sentences of one article whose passages overlap or touch become
one result, whose passage spans them all.

The walk takes sentences best first (in the order the ranking, a date sort or a recency blend
gave them). An article's first `per_article` sentences are its hits, as before merging: each
joins the results of its article that its passage overlaps or touches (joining two results
into one when it bridges them), or starts a result of its own. A later sentence of the article
may still start a result while the article has fewer than `per_article` (a page is filled
with `k` results, and `per_article` counts results), but one that touches a result is left
out: its text is mostly shown already, and letting it join would let a result grow, sentence
by weaker sentence, into its whole article. An article that already has `per_article`
results and meets a sentence that would start one more is closed.

With `collapse`, a sentence near-identical (word overlap, Jaccard) to any sentence a result of
another article already shows (a hit or its context) is listed under that result (`also_in`)
instead of taking a place: copies never show the same text twice either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from sift.search.reader import IndexReader, SentenceRow

_TOKEN = re.compile(r"\w+")
_MIN_WORDS_FOR_OVERLAP = 5


@dataclass
class Scored:
    """One hit sentence: its row, its score and its place in the walk (lower is better).
    Its words are read only when copies are compared."""

    row: SentenceRow
    score: float
    order: int

    @cached_property
    def _tokens(self) -> list[str]:
        return _TOKEN.findall(self.row.text.lower())

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(self._tokens)

    @cached_property
    def key(self) -> str:
        return " ".join(self._tokens)


@dataclass
class Merged:
    """A result: the hit sentences of one article, best first, and the span of its passage
    in sentence positions (first and last, inclusive)."""

    hits: list[Scored]
    first: int
    last: int
    also_in: list[str] = field(default_factory=list)
    shown: bool = False  # holds a result that an earlier page showed
    seen: list[Scored] = field(default_factory=list)  # every sentence of the passage
    seen_texts: set[str] = field(default_factory=set)  # their texts, for exact copies
    seen_keys: set[str] = field(default_factory=set)  # their words, as one string each

    @property
    def best(self) -> Scored:
        return self.hits[0]

    @property
    def article_id(self) -> str:
        return self.best.row.article_id

    @property
    def score(self) -> float:
        return self.best.score

    def touches(self, first: int, last: int) -> bool:
        return first <= self.last + 1 and self.first <= last + 1


def _rows(reader: IndexReader, ids: list[int]) -> Iterator[tuple[int, SentenceRow | None]]:
    for start in range(0, len(ids), 256):
        chunk = ids[start : start + 256]
        rows = reader.sentences(chunk)
        for sid in chunk:
            yield sid, rows.get(sid)


def merge_walk(
    reader: IndexReader,
    ids: list[int],
    scores: dict[int, float],
    k: int,
    per_article: int,
    context: int,
    collapse: float | None,
    offset: int = 0,
) -> list[Merged]:
    """A page of `k` results of `ids` after the first `offset`: each a merge of the hits whose
    passages (`context` sentences either side) overlap or touch, at most `per_article`
    results an article.

    Pages come from one walk: the first `offset` results (as the walk first holds that many)
    count as shown, and the page is the first `k` results that hold none of them. A walk only
    grows and joins results, so a page never repeats the text of an earlier one, and pages
    of one query line up with one long page of it."""
    placed: dict[str, int] = {}  # sentences placed, by article
    results: list[Merged] = []
    by_article: dict[str, list[Merged]] = {}
    closed: set[str] = set()
    counting = offset == 0  # the earlier pages are behind us
    pending: set[str] | None = None  # once the page is full: its articles that may still grow
    for order, (sid, row) in enumerate(_rows(reader, ids)):
        if row is None or row.article_id in closed:  # None: removed since the ranking was read
            continue
        article = row.article_id
        hit = Scored(row, scores[sid], order)
        # Once the page is full the walk goes on only while a result on it can still take a
        # hit, so that a result is the same on a short page as on a long one; what comes
        # after the page is not compared for copies (it is not shown).
        checking = collapse is not None and pending is None
        if checking:
            assert collapse is not None
            twin = next((r for r in results if _copied(r, hit, collapse)), None)
            if twin is not None:
                if article != twin.article_id and article not in twin.also_in:
                    twin.also_in.append(article)
                continue
        first, last = row.position - context, row.position + context
        mine = by_article.setdefault(article, [])
        near = [r for r in mine if r.touches(first, last)]
        if near and placed.get(article, 0) >= per_article:
            continue
        if near:
            host = near[0]  # the earliest made, so the one holding the best hit
            for other in near[1:]:
                host.hits.extend(other.hits)
                host.first, host.last = min(host.first, other.first), max(host.last, other.last)
                host.also_in.extend(a for a in other.also_in if a not in host.also_in)
                host.shown = host.shown or other.shown
                mine.remove(other)
                results.remove(other)
            host.hits.append(hit)
            host.hits.sort(key=lambda h: h.order)
            host.first, host.last = min(host.first, first), max(host.last, last)
            if collapse is not None:
                _see(reader, host)
        elif len(mine) >= per_article:
            closed.add(article)
        else:
            result = Merged([hit], first, last)
            if checking:
                _see(reader, result)
            mine.append(result)
            results.append(result)
        placed[article] = placed.get(article, 0) + (article not in closed)
        if pending is not None:
            if article in closed or placed[article] >= per_article:
                pending.discard(article)
            if not pending:
                break
            continue
        if not counting and len(results) >= offset:
            for result in results:
                result.shown = True
            counting = True
        if counting and sum(not r.shown for r in results) >= k:
            pending = {
                r.article_id
                for r in results
                if r.article_id not in closed and placed[r.article_id] < per_article
            }
            if not pending:
                break
    page = [r for r in results if not r.shown][:k] if counting else []
    if collapse is not None and page:
        _trim(results[: results.index(page[-1]) + 1], collapse)
    return page


def _trim(results: list[Merged], threshold: float) -> None:
    """Context at the edges of a passage that repeats what a better result of another article
    shows is cut off: a hit of its own can sit beside a copied sentence."""
    for i, result in enumerate(results):
        before = [s for r in results[:i] if r.article_id != result.article_id for s in r.seen]
        if not before or not result.seen:
            continue
        hits = {h.row.position for h in result.hits}
        seen = result.seen
        while _context_copy(seen[0], hits, before, threshold):
            seen.pop(0)
        while _context_copy(seen[-1], hits, before, threshold):
            seen.pop()
        result.first, result.last = seen[0].row.position, seen[-1].row.position


def _context_copy(sentence: Scored, hits: set[int], before: list[Scored], threshold: float) -> bool:
    return sentence.row.position not in hits and any(_same(b, sentence, threshold) for b in before)


def _see(reader: IndexReader, result: Merged) -> None:
    rows = reader.sentences_between(result.article_id, result.first, result.last)
    result.seen = [Scored(r, 0.0, -1) for r in rows]
    result.seen_texts = {s.row.text for s in result.seen}
    result.seen_keys = {s.key for s in result.seen}


def _copied(result: Merged, hit: Scored, threshold: float) -> bool:
    """The sentence repeats what `result` shows: in another article, any sentence of its
    passage; in the same article, one of its hits word for word (a repeated line)."""
    if result.article_id == hit.row.article_id:
        return any(h.key == hit.key for h in result.hits)
    if hit.row.text in result.seen_texts or hit.key in result.seen_keys:
        return True
    return any(_overlap(s.words, hit.words, threshold) for s in result.seen)


def _same(a: Scored, b: Scored, threshold: float) -> bool:
    return a.key == b.key or _overlap(a.words, b.words, threshold)


def _overlap(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    small, large = sorted((len(a), len(b)))
    # Jaccard is at most small / large: most pairs are told apart by their sizes alone.
    if small < _MIN_WORDS_FOR_OVERLAP or small < threshold * large:
        return False
    shared = len(a & b)
    return shared / (small + large - shared) >= threshold
