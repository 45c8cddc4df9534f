"""The words of a keyword search. User text never becomes query syntax: a query is cut into
words, and the keyword index (index/keyword_index.py) builds term queries from their analysed
tokens, so quotes, AND/OR/NOT, `*`, `^` and field names in user text are plain words. Any word
may match (OR), ranked by BM25.
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
