"""Keyword search (SQLite FTS5, BM25) with user text that never reaches FTS5 as syntax.

A query is cut into words and each word is quoted as an FTS5 string, so quotes, AND/OR/NOT,
NEAR(...), `*`, `^` and column filters in user text are searched for as plain words.

BM25 over an OR of words costs FTS5 about 0.7 us for every row that holds any of them, and at
a million sentences a common word holds tens of thousands: 80 ms for a news headline. A word
that common weighs little in BM25 (its idf is low), so `plan` keeps the rarest words, in order
of rarity, while the rows they hold fit a budget; a query of common words only becomes an AND
of them, which holds few rows. Below the budget nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Words too common to help a keyword match; they only slow an OR query down.
STOPWORDS = frozenset(
    """a an and are as at be been by can could did do does for from had has have he her his how
    i if in into is it its me my of on or our she so than that the their them then there these
    they this to us was we were what when where which while who whom whose why will with would
    you your""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """The words of a query worth matching, lower-cased, each once, in order."""
    words = [w.lower() for w in _WORD.findall(text)]
    useful = [w for w in words if w not in STOPWORDS]
    return list(dict.fromkeys(useful or words))


def quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def plan(terms: list[str], rows_of: Callable[[str], int], budget: int) -> str | None:
    """The MATCH expression to rank `terms` by, within about `budget` rows of BM25 work.

    `rows_of(term)` is how many rows hold the term, capped anywhere above `budget`. Words are
    taken rarest first while their rows fit the budget (the rarest always); when even the
    rarest is over it, the words must all be present (AND). Words in no row are dropped."""
    if not terms:
        return None
    counts = {term: rows_of(term) for term in terms}
    present = sorted((t for t in terms if counts[t] > 0), key=lambda t: (counts[t], terms.index(t)))
    if not present:
        return None
    if counts[present[0]] > budget and len(present) > 1:
        return " AND ".join(quoted(t) for t in present)
    chosen, used = [], 0
    for term in present:
        if chosen and used + counts[term] > budget:
            break
        chosen.append(term)
        used += counts[term]
    chosen.sort(key=terms.index)
    return " OR ".join(quoted(t) for t in chosen)
