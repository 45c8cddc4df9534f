"""Related coverage: the articles nearest one article, with the passages that tie them.

Each sentence of the article looks up its nearest sentences (FAISS); the articles they belong
to are the candidates. A candidate is scored on all its sentences against all of the
article's, as BERTScore does with tokens: recall (how much of the article it covers: each
article sentence's best match, averaged), precision (the same the other way), and their
harmonic mean. Its passages are its sentences that match best, merged like search results.

Copies of the article are left out: identical text under other ids (stored once), and near
copies whose words overlap the article's by `collapse_similarity` (Jaccard) or more.
"""

from __future__ import annotations

import re

import numpy as np
from sift.search.merge import merge_walk
from sift.search.passages import build_hits
from sift.search.reader import IndexReader
from sift.search.results import SimilarArticle, SimilarResponse, Tie

_TOKEN = re.compile(r"\w+")
#: Neighbours each sentence of the article looks up.
NEIGHBOURS = 50


def _words(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text)}


def similar_articles(
    reader: IndexReader,
    article_id: str,
    k: int,
    context: int,
    per_article: int,
    collapse: float,
) -> SimilarResponse | None:
    """None when there is no article with that id."""
    view = reader.article(article_id)
    if view is None:
        return None
    holder = view.duplicate_of or view.id
    copies = [c for c in reader.copies({holder}).get(holder, []) if c != article_id]
    if holder != article_id:
        copies.insert(0, holder)
    own_ids, _, own = reader.sentence_vectors([holder])
    if not own_ids:
        return SimilarResponse(article_id=article_id, k=k, took_ms=0.0, copies=copies, results=[])
    found: set[int] = set()
    for vector in own:
        _, ids = reader.nearest(vector, NEIGHBOURS)
        found.update(int(i) for i in ids)
    owners = reader.article_of(sorted(found))
    candidates = sorted({a for a in owners.values() if a != holder})
    if not candidates:
        return SimilarResponse(article_id=article_id, k=k, took_ms=0.0, copies=copies, results=[])
    ids, articles, vectors = reader.sentence_vectors(candidates)
    sims = own @ vectors.T  # article sentences x candidate sentences
    own_rows = reader.sentences(own_ids)
    mine = _words(" ".join(own_rows[i].text for i in own_ids))
    scored: list[tuple[float, str, np.ndarray]] = []
    columns: dict[str, list[int]] = {}
    for col, a in enumerate(articles):
        columns.setdefault(a, []).append(col)
    for a, cols in columns.items():
        block = np.clip(sims[:, cols], 0.0, None)
        recall = float(block.max(axis=1).mean())
        precision = float(block.max(axis=0).mean())
        score = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        scored.append((score, a, np.asarray(cols)))
    scored.sort(key=lambda t: (-t[0], t[1]))
    results: list[SimilarArticle] = []
    for score, a, cols in scored:
        text = reader.article(a)
        theirs = _words(text.text) if text else set()
        if theirs and len(mine & theirs) / len(mine | theirs) >= collapse:
            copies.append(a)
            continue
        # Its sentences best matched to one of the article's, best first.
        best_match = sims[:, cols].max(axis=0)
        partner = sims[:, cols].argmax(axis=0)
        order = np.argsort(-best_match)
        sentence_ids = [ids[cols[i]] for i in order]
        sentence_scores = {ids[cols[i]]: float(best_match[i]) for i in order}
        merged = merge_walk(
            reader, sentence_ids, sentence_scores, per_article, per_article, context, None
        )
        passages = build_hits(reader, merged, context)
        ties = []
        for item, hit in zip(merged, passages, strict=True):
            col = sentence_ids.index(item.best.row.id)
            row = own_rows[own_ids[int(partner[order[col]])]]
            ties.append(Tie(passage=hit, sentence=row.text, start=row.start, end=row.end))
        results.append(
            SimilarArticle(
                rank=len(results) + 1,
                score=round(score, 4),
                article_id=a,
                title=text.title if text else None,
                source=text.source if text else None,
                url=text.url if text else None,
                published=text.published if text else None,
                ties=ties,
            )
        )
        if len(results) >= k:
            break
    return SimilarResponse(
        article_id=article_id, k=k, took_ms=0.0, copies=list(dict.fromkeys(copies)), results=results
    )
