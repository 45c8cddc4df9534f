"""Fusing rankings: reciprocal rank fusion (ranks alone) and a convex combination of scores.

rrf: score(x) = sum over rankings r of weight_r / (k + rank_r(x)), rank from 1. k=60 is the
constant of Cormack, Clarke and Buettcher (SIGIR 2009), used unchanged across collections.
convex: score(x) = sum over lists of weight_r * score_r(x) / max score_r, each list scaled by its
best score (BM25 and cosine are both 0 at worst for a match), an item missing from a list
counting 0 there (Bruch, Gai and Ingber, "An analysis of fusion functions for hybrid
retrieval", TOIS 2023). See README "Ranking quality" for what was measured.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def rrf(rankings: Sequence[Sequence[T]], weights: Sequence[float], k: float) -> dict[T, float]:
    scores: dict[T, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0:
            continue
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def convex(scored: Sequence[Mapping[T, float]], weights: Sequence[float]) -> dict[T, float]:
    """Weighted sum of each list's scores over its best one (negative scores count as 0)."""
    scores: dict[T, float] = {}
    for items, weight in zip(scored, weights, strict=True):
        top = max(items.values(), default=0.0)
        if weight == 0 or top <= 0:
            continue
        for item, score in items.items():
            scores[item] = scores.get(item, 0.0) + weight * max(score, 0.0) / top
    return scores


def ranked(scores: dict[T, float], tiebreak: dict[T, int] | None = None) -> list[T]:
    """Items best first; ties go to the item seen first (`tiebreak`: lower is earlier)."""
    order = tiebreak or {}
    return sorted(scores, key=lambda item: (-scores[item], order.get(item, 0)))
