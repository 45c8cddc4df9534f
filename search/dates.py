"""Publication dates in the ranking: newest first (`sort=date`), or age blended into the
relevance score with a stated half-life (`recency`).

Recency multiplies each score by 0.5 ** (age / half-life): an article a half-life older than
another needs twice its relevance to rank beside it. Ages are counted from the newest dated
candidate (or now, if that is sooner): the order is the same as counting from now, and the
scores of an archive's results do not all round to zero. An undated article
is neither favoured nor dropped: it takes the median factor of the dated candidates (the
factor of a typical candidate). Date order puts undated articles after the dated ones.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from datetime import datetime, timezone
from statistics import median
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

_HALF_LIFE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|d|w|m|y)\s*$", re.IGNORECASE)
_HOURS = {"h": 1.0, "d": 24.0, "w": 24.0 * 7, "m": 24.0 * 30, "y": 24.0 * 365}


def half_life_hours(text: str) -> float:
    """`30d`, `12h`, `2w`, `6m` (30-day months) or `1y` in hours."""
    found = _HALF_LIFE.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(
            f"recency is a half-life like 30d, 12h, 2w, 6m or 1y (hours, days, weeks, months, "
            f"years), got {text!r}"
        )
    return float(found.group(1)) * _HOURS[found.group(2).lower()]


def published_at(value: str | None) -> datetime | None:
    """An article's publication time (UTC when it gives no zone); None when undated."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def by_date(items: Sequence[T], scores: dict[T, float], published: dict[T, str | None]) -> list[T]:
    """Newest first; the same date by relevance; undated ones last, by relevance."""
    rank = {item: i for i, item in enumerate(items)}
    when = {item: published_at(published.get(item)) for item in items}
    dated = [i for i in items if when[i] is not None]
    undated = [i for i in items if when[i] is None]
    dated.sort(key=lambda i: (when[i], scores.get(i, 0.0), -rank[i]), reverse=True)
    undated.sort(key=lambda i: (-scores.get(i, 0.0), rank[i]))
    return dated + undated


def blend_recency(
    items: Sequence[T],
    scores: dict[T, float],
    published: dict[T, str | None],
    hours: float,
    now: datetime,
) -> tuple[list[T], dict[T, float], datetime]:
    """Items re-ranked by score x 0.5 ** (age / half-life), the blended scores, and the time
    the ages were counted from."""
    when = {item: published_at(published.get(item)) for item in items}
    dated = [w for w in when.values() if w is not None]
    counted_from = min(max(dated), now) if dated else now
    factors: dict[T, float | None] = {}
    for item in items:
        at = when[item]
        if at is None:
            factors[item] = None
        else:
            age = max((counted_from - at).total_seconds() / 3600, 0.0)
            factors[item] = 0.5 ** (age / hours)
    known = [f for f in factors.values() if f is not None]
    typical = median(known) if known else 1.0
    blended: dict[T, float] = {}
    for item in items:
        factor = factors[item]
        factor = typical if factor is None else factor
        score = scores.get(item, 0.0)
        # A negative score (a cosine below zero) must fall with age, not rise.
        blended[item] = score * factor if score >= 0 or factor == 0 else score / factor
    rank = {item: i for i, item in enumerate(items)}
    return sorted(items, key=lambda i: (-blended[i], rank[i])), blended, counted_from
