"""Counters and latency percentiles per tier; counters persist through the store."""

from __future__ import annotations

from collections import deque
from typing import Any

from ._pipeline import percentile
from ._types import Tier

_WINDOW = 4096


class Stats:
    def __init__(self) -> None:
        self.base: dict[str, float] = {}  # loaded from the store at open
        self.pending: dict[str, float] = {}  # not yet written to the store
        self.session: dict[str, float] = {}
        self._latency: dict[str, deque[float]] = {t.value: deque(maxlen=_WINDOW) for t in Tier}

    def count(self, name: str, delta: float = 1.0) -> None:
        self.pending[name] = self.pending.get(name, 0.0) + delta
        self.session[name] = self.session.get(name, 0.0) + delta

    def record(self, tier: Tier, latency_ms: float) -> None:
        self.count(f"tier.{tier.value}")
        self._latency[tier.value].append(latency_ms)

    def take_pending(self) -> dict[str, float]:
        out, self.pending = self.pending, {}
        return out

    def total(self, name: str) -> float:
        return self.base.get(name, 0.0) + self.session.get(name, 0.0)

    def latency(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for tier, values in self._latency.items():
            if not values:
                continue
            ordered = sorted(values)
            out[tier] = {
                "count": float(len(ordered)),
                "p50_ms": round(percentile(ordered, 0.50), 3),
                "p95_ms": round(percentile(ordered, 0.95), 3),
                "p99_ms": round(percentile(ordered, 0.99), 3),
            }
        return out

    def summary(self) -> dict[str, Any]:
        tiers = {t.value: int(self.total(f"tier.{t.value}")) for t in Tier}
        hits = tiers["exact"] + tiers["verbatim"]
        lookups = hits + tiers["synthesis"] + tiers["upstream"] + tiers["miss"]
        return {
            "hits": hits,
            "misses": tiers["upstream"] + tiers["miss"],
            "synthesized": tiers["synthesis"],
            "blocked": tiers["blocked"],
            "bypassed": tiers["bypass"],
            "lookups": lookups,
            "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
            "tiers": tiers,
            "cache_errors": int(self.total("cache_errors")),
        }
