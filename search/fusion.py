"""Fusing rankings: reciprocal rank fusion (ranks alone) and a convex combination of scores.

rrf: score(x) = sum over rankings r of weight_r / (k + rank_r(x)), rank from 1. k=60 is the
constant of Cormack, Clarke and Buettcher (SIGIR 2009), used unchanged across collections.
convex: score(x) = sum over lists of weight_r * z_r(x), z the list's scores standardised (mean 0,
sd 1), an item missing from a list counting as that list's worst: a convex combination of
normalised scores (Bruch, Gai and Ingber, "An analysis of fusion functions for hybrid
retrieval", TOIS 2023). Hybrid search uses it; see README "Ranking quality" for the figures.
"""

from __future__ import annotations

import math
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


def standardised(scores: Mapping[T, float]) -> tuple[dict[T, float], float]:
    """Each score as standard deviations from its list's mean, and the lowest of them (what an
    item the list did not return counts as: no better than the list's worst)."""
    if not scores:
        return {}, 0.0
    values = list(scores.values())
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    z = {item: (v - mean) / sd if sd > 0 else 0.0 for item, v in scores.items()}
    return z, min(z.values())


def convex(
    items: Sequence[T],
    lists: Sequence[Mapping[Hashable, float]],
    weights: Sequence[float],
    keys: Sequence[Mapping[T, Hashable] | None] | None = None,
) -> dict[T, float]:
    """Weighted sum of each list's standardised scores, squashed into (0, 1) (logistic, so the
    order is the sum's): a clear winner in one list keeps its margin, which ranks alone lose.
    `keys[r]`, where given, says what an item is called in list r (a sentence's article)."""
    fused: dict[T, float] = {}
    lookups = keys or [None] * len(lists)
    parts = [
        (standardised(scores), w, key)
        for scores, w, key in zip(lists, weights, lookups, strict=True)
        if w
    ]
    for item in items:
        total = 0.0
        for (z, floor), w, key in parts:
            name = item if key is None else key.get(item)
            total += w * z.get(name, floor)
        fused[item] = 1 / (1 + math.exp(-total))
    return fused


def ranked(scores: dict[T, float], tiebreak: dict[T, int] | None = None) -> list[T]:
    """Items best first; ties go to the item seen first (`tiebreak`: lower is earlier)."""
    order = tiebreak or {}
    return sorted(scores, key=lambda item: (-scores[item], order.get(item, 0)))
