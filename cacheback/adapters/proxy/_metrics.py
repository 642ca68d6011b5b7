"""Prometheus text exposition (format 0.0.4), without a client library.

Counters and histograms live in this process; with ``--workers N`` each scrape sees
one worker (every series carries a ``worker`` label with its pid so that a scraper can
sum them). Entry counts and queue depths are read from the engine at scrape time.
"""

from __future__ import annotations

import bisect
import gc
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._rollup import Rollup

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(_BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(_BUCKETS, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.count += 1
        self.total += seconds


class Metrics:
    def __init__(self) -> None:
        self.worker = str(os.getpid())
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.guard_vetoes: dict[str, int] = {}
        self.rollup = Rollup()  # the dashboard's history

    def observe(self, endpoint: str, tier: str, status: int, seconds: float) -> None:
        self.rollup.observe(tier, time.time())
        key = (endpoint, tier, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((endpoint, tier))
        if hist is None:
            hist = self.latency[(endpoint, tier)] = _Histogram()
        hist.observe(seconds)

    def upstream_error(self, provider: str, kind: str) -> None:
        key = (provider, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def vetoed(self, reasons: Iterable[str]) -> None:
        """A candidate close enough for a hit that the guard refused, by reason."""
        for reason in reasons:
            self.guard_vetoes[reason] = self.guard_vetoes.get(reason, 0) + 1

    def render(self, engine_stats: Mapping[str, Any] | None, queues: Mapping[str, int]) -> str:
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value: float, **labels: str) -> None:
            out.append(f"{name}{_labels(worker=self.worker, **labels)} {_num(value)}")

        name = "cacheback_proxy_requests_total"
        head(name, "counter", "Requests answered, by endpoint, tier and status.")
        for (endpoint, tier, status), n in sorted(self.requests.items()):
            sample(name, n, endpoint=endpoint, tier=tier, status=status)
        name = "cacheback_proxy_request_duration_seconds"
        head(
            name, "histogram", "Time to response headers (streams: to the first byte), by endpoint and tier."
        )
        for (endpoint, tier), h in sorted(self.latency.items()):
            cumulative = 0
            for bound, n in zip(_BUCKETS, h.counts, strict=True):
                cumulative += n
                sample(f"{name}_bucket", cumulative, endpoint=endpoint, tier=tier, le=_num(bound))
            sample(f"{name}_bucket", h.count, endpoint=endpoint, tier=tier, le="+Inf")
            sample(f"{name}_sum", h.total, endpoint=endpoint, tier=tier)
            sample(f"{name}_count", h.count, endpoint=endpoint, tier=tier)
        name = "cacheback_proxy_upstream_errors_total"
        head(name, "counter", "Failed provider calls, by provider and kind (HTTP status, timeout, ...).")
        for (provider, kind), n in sorted(self.upstream_errors.items()):
            sample(name, n, provider=provider, kind=kind)
        name = "cacheback_proxy_guard_vetoes_total"
        head(name, "counter", "Hits the guard refused (the request went on to a lower tier), by reason.")
        for reason, n in sorted(self.guard_vetoes.items()):
            sample(name, n, reason=reason)
        head("cacheback_proxy_in_flight_requests", "gauge", "Requests being answered now.")
        sample("cacheback_proxy_in_flight_requests", self.in_flight)
        head("cacheback_queue_depth", "gauge", "Jobs waiting in each pipeline stage's inbox.")
        for stage, depth in sorted(queues.items()):
            sample("cacheback_queue_depth", depth, stage=stage)
        name = "cacheback_gc_collections_total"
        head(name, "counter", "Python garbage collections in this process, by generation (2: full).")
        for generation, stats in enumerate(gc.get_stats()):
            sample(name, int(stats["collections"]), generation=str(generation))
        name = "cacheback_gc_frozen_objects"
        head(name, "gauge", "Objects frozen out of garbage collections (--gc-freeze).")
        sample(name, gc.get_freeze_count())
        if engine_stats is not None:
            cache = engine_stats.get("cache") or {}
            head("cacheback_cache_degraded", "gauge", "1 while the cache cannot be used (pass-through).")
            sample("cacheback_cache_degraded", 0 if cache.get("status", "ok") == "ok" else 1)
            head("cacheback_entries", "gauge", "Live entries in the cache store.")
            # None while the store is broken: unknown, reported as 0 with the gauge above.
            sample("cacheback_entries", int(engine_stats.get("entries") or 0))
            head("cacheback_negative_entries", "gauge", "Entries in the negative cache.")
            sample("cacheback_negative_entries", int(engine_stats.get("negative_entries") or 0))
            head("cacheback_hit_rate", "gauge", "Hits over lookups (persisted counters).")
            sample("cacheback_hit_rate", float(engine_stats.get("hit_rate", 0.0)))
            head("cacheback_tier_total", "counter", "Engine outcomes by tier (persisted counters).")
            for tier, n in sorted((engine_stats.get("tiers") or {}).items()):
                sample("cacheback_tier_total", int(n), tier=tier)
            head("cacheback_cache_errors_total", "counter", "Cache failures that fell back to upstream.")
            sample("cacheback_cache_errors_total", int(engine_stats.get("cache_errors", 0)))
            speculation = engine_stats.get("speculation") or {}
            name = "cacheback_speculative_calls_total"
            head(name, "counter", "Upstream calls sent before their lookup ended (speculative_upstream).")
            sample(name, int(speculation.get("sent", 0)))
            name = "cacheback_speculative_taken_back_total"
            head(name, "counter", "Speculative calls aborted because the lookup found an answer.")
            sample(name, int(speculation.get("taken_back", 0)))
            unwritten = engine_stats.get("unwritten") or {}
            name = "cacheback_unwritten_answers"
            head(name, "gauge", "Answers kept in memory while the store could not take them.")
            sample(name, int(unwritten.get("waiting", 0)))
            name = "cacheback_unwritten_dropped_total"
            head(name, "counter", "Answers dropped from that buffer (full, or refused by the store).")
            sample(name, int(unwritten.get("dropped", 0)))
        return "\n".join(out) + "\n"
