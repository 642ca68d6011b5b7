"""Requests per tier over time, in bounded minute buckets (one process's view).

The dashboard's charts need a recent history that ``/metrics`` counters do not keep. One
bucket per minute, at most a day of them: memory stays fixed however long the proxy runs.
Building the series is a pure function of the buckets and the clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

MINUTE = 60.0
DAY_MINUTES = 24 * 60


@dataclass(slots=True)
class Bucket:
    minute: int  # whole minutes since the epoch
    tiers: dict[str, int] = field(default_factory=dict)


class Rollup:
    def __init__(self, keep_minutes: int = DAY_MINUTES) -> None:
        self._buckets: deque[Bucket] = deque(maxlen=keep_minutes)

    def observe(self, tier: str, now: float) -> None:
        minute = int(now // MINUTE)
        if not self._buckets or self._buckets[-1].minute < minute:
            self._buckets.append(Bucket(minute))
        # A clock that stepped back lands in the newest bucket rather than reordering them.
        bucket = self._buckets[-1]
        bucket.tiers[tier] = bucket.tiers.get(tier, 0) + 1

    def buckets(self) -> list[Bucket]:
        return list(self._buckets)


HIT_TIERS = ("exact", "verbatim")
LOOKUP_TIERS = ("exact", "verbatim", "synthesis", "upstream", "miss")


def series(buckets: list[Bucket], now: float, span_minutes: int, step_minutes: int) -> dict[str, Any]:
    """Requests per tier and hit rate in ``span_minutes // step_minutes`` points ending now.

    Points are oldest first; ``start`` is the epoch second of the first one. A tier appears
    only if it was seen in the span. Hit rate is hits over lookups per point (None when a
    point has no lookups, so a chart can leave a gap rather than draw a false zero).
    """
    points = max(1, span_minutes // step_minutes)
    last = int(now // MINUTE)
    first = last - points * step_minutes + 1
    tiers: dict[str, list[int]] = {}
    for b in buckets:
        if b.minute < first or b.minute > last:
            continue
        i = (b.minute - first) // step_minutes
        for tier, n in b.tiers.items():
            tiers.setdefault(tier, [0] * points)[i] += n
    hit_rate: list[float | None] = []
    for i in range(points):
        hits = sum(tiers[t][i] for t in HIT_TIERS if t in tiers)
        lookups = sum(tiers[t][i] for t in LOOKUP_TIERS if t in tiers)
        hit_rate.append(round(hits / lookups, 4) if lookups else None)
    return {
        "start": first * int(MINUTE),
        "step_s": step_minutes * int(MINUTE),
        "points": points,
        "tiers": dict(sorted(tiers.items())),
        "hit_rate": hit_rate,
    }
