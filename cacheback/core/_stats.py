"""Counters and latency percentiles per tier; counters persist through the store."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from ._types import Tier

_WINDOW = 4096
# Tiers that spend (provider calls) or save (answers served without the upstream call).
_COST_TIERS = ("exact", "verbatim", "synthesis", "upstream", "bypass")


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

    def record_usage(self, tier: str, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        """One provider call made for ``tier`` (upstream, bypass, synthesis) and its estimated cost."""
        self.count(f"cost.{tier}.llm_calls")
        self.count(f"cost.{tier}.input_tokens", float(input_tokens))
        self.count(f"cost.{tier}.output_tokens", float(output_tokens))
        if cost_usd is None:
            self.count(f"cost.{tier}.unpriced_calls")  # a model the price table does not know
        else:
            self.count(f"cost.{tier}.spent_usd", cost_usd)

    def record_saving(self, tier: str, usd: float) -> None:
        """The estimated upstream cost a hit or a synthesis avoided."""
        self.count(f"cost.{tier}.saved_usd", usd)

    def record_saved_tokens(self, tier: str, input_tokens: int, output_tokens: int) -> None:
        """The tokens of the upstream call a hit or a synthesis stood in for."""
        self.count(f"cost.{tier}.saved_input_tokens", float(input_tokens))
        self.count(f"cost.{tier}.saved_output_tokens", float(output_tokens))

    def cost(self) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
        """Per tier: requests, provider calls, tokens, spend and savings; then the totals.

        ``net_saved_usd`` is what hits and synthesis avoided minus what the cheap model
        cost (declined attempts included); ``savings_rate`` compares the spend with the
        spend there would have been without the cache.
        """
        tiers: dict[str, dict[str, Any]] = {}
        for name in _COST_TIERS:
            row: dict[str, Any] = {"requests": int(self.total(f"tier.{name}"))}
            for key in (
                "llm_calls",
                "input_tokens",
                "output_tokens",
                "unpriced_calls",
                "saved_input_tokens",
                "saved_output_tokens",
            ):
                row[key] = int(self.total(f"cost.{name}.{key}"))
            for key in ("spent_usd", "saved_usd"):
                row[key] = round(self.total(f"cost.{name}.{key}"), 6)
            tiers[name] = row
        spent = sum(r["spent_usd"] for r in tiers.values())
        saved = sum(r["saved_usd"] for r in tiers.values())
        net = saved - tiers["synthesis"]["spent_usd"]
        without = spent - tiers["synthesis"]["spent_usd"] + saved
        totals = {
            "saved_tokens": sum(r["saved_input_tokens"] + r["saved_output_tokens"] for r in tiers.values()),
            "spent_usd": round(spent, 6),
            "saved_usd": round(saved, 6),
            "net_saved_usd": round(net, 6),
            "savings_rate": round(net / without, 4) if without > 0 else 0.0,
        }
        return tiers, totals

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
        cost, savings = self.cost()
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
            # speculative_upstream: calls sent before their lookup ended, and those a hit
            # then took back (each one a request the provider may bill: docs/engine.md)
            "speculation": {
                "sent": int(self.total("speculated")),
                "taken_back": int(self.total("speculation_wasted")),
            },
            "cost": cost,
            "savings": savings,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]
