"""Keyword search (SQLite FTS5, BM25) with user text that never reaches FTS5 as syntax.

A query is cut into words and each word is quoted as an FTS5 string, so quotes, AND/OR/NOT,
NEAR(...), `*`, `^` and column filters in user text are searched for as plain words.
"""

from __future__ import annotations

import re

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


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression for `text`: its words, quoted, joined by OR; None if no words."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
