"""Fusing rankings: a convex combination of scores (the default) and reciprocal rank fusion.

convex: score(x) = sum over lists r of weight_r * n_r(x), each list's scores
put on [0, 1] by theoretical min-max: n(s) = (s - low) / (best - low), where `low` is the least
the score can be (cosine -1, BM25 0) and `best` the list's top score. This is TM2C2 of Bruch,
Gai and Ingber ("An analysis of fusion functions for hybrid retrieval", TOIS 2023): unlike
z-scores or min-max over the list, it does not depend on how many items the list holds, so a
filter that leaves a short list, or a small index, ranks as a large one does. A clear winner in
one list keeps its margin, which ranks alone lose. The sum is then mapped onto [0, 1] (0: no
better than every list's floor; see `convex`), which keeps its order.
rrf: score(x) = sum over rankings r of weight_r / (k + rank_r(x)), rank from 1 (Cormack, Clarke
and Buettcher, SIGIR 2009).
See README "Ranking quality" for how each ranks.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Scored:
    """One list for convex fusion: its scores, the least a score can be, whether the list holds
    every item scoring above that (else it was cut at a depth), and what each fused item is
    called in it (a sentence's article), where not the item itself."""

    scores: Mapping[Hashable, float]
    low: float
    complete: bool
    key: Mapping[Hashable, Hashable] | None = None

    def normalised(self) -> tuple[dict[Hashable, float], float]:
        """Scores on [0, 1], and what an item the list did not return counts as: nothing, when
        the list is complete; else no more than the list's worst. A list whose best is its
        least possible score holds no evidence: all 0."""
        if not self.scores:
            return {}, 0.0
        span = max(self.scores.values()) - self.low
        scaled = {
            i: min(max((s - self.low) / span, 0.0), 1.0) if span > 0 else 0.0
            for i, s in self.scores.items()
        }
        return scaled, 0.0 if self.complete else min(scaled.values())


def convex(items: Sequence[T], lists: Sequence[Scored], weights: Sequence[float]) -> dict[T, float]:
    """Each item's weighted mean of its normalised scores in `lists`, mapped onto [0, 1] so that
    0 is an item no better than each list's floor (its worst, or nothing) and 1 the best of
    every list. The map is affine, so the order is the mean's; it gives the score a zero that
    means no evidence, which a multiplier such as recency's needs (cosines scaled from -1 keep
    even the weakest candidates near the best)."""
    parts = [
        (scored.normalised(), w, scored.key)
        for scored, w in zip(lists, weights, strict=True)
        if w > 0
    ]
    total = sum(w for _, w, _ in parts)
    base = sum(w * floor for (_, floor), w, _ in parts)
    fused: dict[T, float] = {}
    for item in items:
        score = 0.0
        for (scaled, floor), w, key in parts:
            name = item if key is None else key.get(item)
            score += w * scaled.get(name, floor)
        fused[item] = (score - base) / (total - base) if total > base else 0.0
    return fused


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
