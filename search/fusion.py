"""Reciprocal rank fusion: one ranking from several, by rank alone (scores need no scaling).

score(x) = sum over rankings r of weight_r / (k + rank_r(x)), rank from 1.
Weights and k were chosen on SQuAD (ReQA protocol); see README "Ranking quality".
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
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


def ranked(scores: dict[T, float], tiebreak: dict[T, int] | None = None) -> list[T]:
    """Items best first; ties go to the item seen first (`tiebreak`: lower is earlier)."""
    order = tiebreak or {}
    return sorted(scores, key=lambda item: (-scores[item], order.get(item, 0)))
