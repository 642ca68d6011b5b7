"""What the dashboard and ``cacheback stats`` show, as one dict built from the engine.

``collect`` reads the engine (persisted counters, latency, entries, the most hit entries,
the negative cache, store and embedder); ``dashboard_view`` is the pure function that
shapes it, with a proxy's own in-memory figures (requests over time, guard vetoes) when
there is a proxy. No web framework here: the CLI uses it without the proxy extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..core._embedder_status import NOT_GIVEN
from ..core._errors import CachebackError

if TYPE_CHECKING:
    from ..engine._engine import AsyncEngine

TOP_LIMIT = 10
NEGATIVE_LIMIT = 200


class EntryHits(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def query(self) -> str: ...
    @property
    def hits(self) -> int: ...
    @property
    def last_access(self) -> float: ...


class Collected:
    """The engine's side of the view (None where the store could not answer)."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None
        self.store_error: str | None = None
        self.top: list[EntryHits] | None = None
        self.negatives: list[dict[str, Any]] = []
        self.size_bytes: int | None = None


async def collect(engine: AsyncEngine, *, top: bool = True) -> Collected:
    out = Collected()
    try:
        out.stats = await engine.admin.stats()
        out.negatives = [negative_dict(e) for e in await engine.blocklist.list(None, NEGATIVE_LIMIT)]
        if top:
            out.top = await top_entries(engine)
        out.size_bytes = await anyio.to_thread.run_sync(store_bytes, out.stats.get("store") or {})
    except CachebackError as exc:
        out.store_error = type(exc).__name__
    return out


async def top_entries(engine: AsyncEngine) -> list[EntryHits] | None:
    """The most hit entries, or None for a store that cannot rank them."""
    store = engine.store
    finder = getattr(store.maintenance, "top_by_hits", None) if store is not None else None
    if finder is None:
        return None
    found: Sequence[EntryHits] = await finder(TOP_LIMIT)
    return list(found)


def store_bytes(store: Mapping[str, Any]) -> int | None:
    """Bytes on disk of an embedded store's database (with its WAL), None for other stores."""
    database = store.get("database")
    if not isinstance(database, str):
        return None
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(database + suffix).st_size
        except OSError:
            continue
    return total


def negative_dict(e: Any) -> dict[str, Any]:
    return {
        "entry_id": e.id,
        "query": e.query,
        "reason": e.reason,
        "category": e.category,
        "severity": e.severity,
        "false_positives": e.false_positives,
        "created_at": e.created_at,
    }


def dashboard_view(
    c: Collected,
    *,
    now: float,
    content: bool,
    ready: bool,
    series: Mapping[str, Any] | None = None,
    vetoes: Mapping[str, int] | None = None,
    worker: int | None = None,
    requests: int | None = None,
) -> dict[str, Any]:
    """Everything the page (or the table) shows. ``series``, ``vetoes``, ``worker`` and
    ``requests`` are a proxy process's own figures: None without a proxy."""
    s: Mapping[str, Any] = c.stats or {}
    savings: Mapping[str, Any] = s.get("savings") or {}
    store_info: Mapping[str, Any] = s.get("store") or {}
    embedder: Mapping[str, Any] | None = s.get("embedder")
    # The engine's own verdict: "degraded" (with the reason) while the cache cannot be used.
    cache: Mapping[str, Any] = s.get("cache") or {}
    store_ok = (
        c.stats is not None
        and c.store_error is None
        and cache.get("status", "ok") == "ok"
        and bool(store_info.get("open", True))
    )
    return {
        "generated_at": now,
        "worker": worker,
        "content_display": content,
        "totals": {
            "requests": requests,
            "lookups": s.get("lookups", 0),
            "hits": s.get("hits", 0),
            "hit_rate": s.get("hit_rate", 0.0),
            "tiers": s.get("tiers", {}),
            "saved_usd": savings.get("saved_usd", 0.0),
            "net_saved_usd": savings.get("net_saved_usd", 0.0),
            "spent_usd": savings.get("spent_usd", 0.0),
            "savings_rate": savings.get("savings_rate", 0.0),
            "saved_tokens": savings.get("saved_tokens", 0),
            "cache_errors": s.get("cache_errors", 0),
        },
        "cost": s.get("cost", {}),
        "series": dict(series) if series is not None else None,
        "latency_ms": s.get("latency_ms", {}),
        "entries": {"count": s.get("entries"), "size_bytes": c.size_bytes},
        "top_questions": None
        if c.top is None
        else [
            {
                "entry_id": e.id,
                "hits": e.hits,
                "last_access": e.last_access,
                **({"query": e.query} if content else {}),
            }
            for e in c.top
        ],
        "negative": {"count": s.get("negative_entries", len(c.negatives)), "entries": c.negatives},
        "guard_vetoes": None
        if vetoes is None
        else dict(sorted(vetoes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "health": {
            "ready": ready and store_ok,
            "store": {
                "ok": store_ok,
                "error": c.store_error or cache.get("reason"),
                "backend": store_info.get("backend"),
                "index": store_info.get("index"),
                "index_size": store_info.get("index_size"),
            },
            "embedders": embedders(embedder, s.get("embedders"), ready, s.get("embedder_reason")),
        },
    }


def embedders(
    text: Mapping[str, Any] | None, by_kind: Any, ready: bool, reason: Any = None
) -> list[dict[str, Any]]:
    """The text embedder (loaded with the engine), then each configured media embedder
    (loaded on first use: "not loaded" is no fault, "failed" is). With no text embedder,
    ``reason`` (stats' ``embedder_reason``) says why: a fault unless none was wanted."""
    out: list[dict[str, Any]] = []
    if not text and isinstance(reason, str) and reason != NOT_GIVEN:
        out.append({"name": "text", "model": None, "dim": None, "compute": reason, "ok": False})
    if text:
        out.append(
            {
                "name": text.get("name"),
                "model": text.get("model"),
                "dim": text.get("dim"),
                "compute": text.get("compute"),
                "ok": ready,
            }
        )
    for kind, slot in sorted(by_kind.items()) if isinstance(by_kind, Mapping) else ():
        if kind == "text" or not isinstance(slot, Mapping) or slot.get("state") in (None, "off"):
            continue
        out.append(
            {
                "name": f"{kind} {slot.get('name')}",
                "model": None,
                "dim": slot.get("dim"),
                "compute": slot.get("error") or slot.get("state"),
                "ok": slot.get("state") != "failed",
            }
        )
    return out
