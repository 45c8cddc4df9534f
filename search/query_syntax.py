"""The two habits people bring from news search: `"exact phrase"` and `-word`.

Everything else stays plain words. A quote without its partner, or a dash that does not start
a word after a space, is read as text, never as an error; and nothing of what was typed
reaches the keyword engine as its syntax: phrases and excluded words are rebuilt here from
word tokens, and the keyword index builds its phrase queries from those tokens alone.

Scope (see README): a phrase must occur in the hit sentence itself, in every mode, so every
result shows it; an excluded word or phrase drops every article whose title or text holds it
(article level, as a news reader expects `-sport` to leave out the sport stories).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sift.errors import QueryHasOnlyExclusions

_WORD = re.compile(r"\w+", re.UNICODE)
_QUOTES = '"“”„«»'


@dataclass(frozen=True)
class ParsedQuery:
    """What a query asks: the text to search for (phrases included, syntax removed), the
    phrases that results must contain and the words or phrases they must not."""

    text: str
    phrases: tuple[tuple[str, ...], ...] = ()
    excluded: tuple[tuple[str, ...], ...] = ()


def tokens(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD.findall(text))


@lru_cache(maxsize=4096)  # a request reads its query several times (validation, filters, ranking)
def parse_query(query: str) -> ParsedQuery:
    text: list[str] = []
    phrases: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        negated = (
            ch == "-"
            and i + 1 < n
            and (query[i + 1] in _QUOTES or _WORD.match(query, i + 1) is not None)
            and (i == 0 or query[i - 1].isspace())
        )
        at = i + 1 if negated else i
        if query[at] in _QUOTES:
            close = next((j for j in range(at + 1, n) if query[j] in _QUOTES), None)
            if close is None:  # a stray quote: the rest is plain text
                i = at + 1
                continue
            inner = query[at + 1 : close]
            words = tokens(inner)
            if words and negated:
                excluded.append(words)
            elif words:
                phrases.append(words)
                text.append(inner.strip())
            i = close + 1
            continue
        end = at
        while end < n and not query[end].isspace() and query[end] not in _QUOTES:
            end += 1
        chunk = query[at:end]
        if negated:
            if words := tokens(chunk):
                excluded.append(words)
        elif chunk:
            text.append(chunk)
        i = max(end, i + 1)
    searched = " ".join(text).strip()
    if not searched and excluded:
        raise QueryHasOnlyExclusions(
            "the query only excludes words (-word): add words to search for"
        )
    if not searched:
        searched = query.strip()  # only quotes or marks: searched as typed, as before
    return ParsedQuery(searched, tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(excluded)))
