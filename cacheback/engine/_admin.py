"""``engine.admin``: stats and operator actions over the cached entries.

Every action that removes entries also invalidates the hot cache (a deleted answer must
never be replayed from memory). ``stats`` never raises for a store that fails: it reports
the cache as degraded, with the reason, and what it could still count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cacheback._logging import get_logger

from ..core._errors import CachebackError, EngineClosed
from ..core._ports import LLM
from ..core._store_ports import Store
from ..core._types import CacheEntry

if TYPE_CHECKING:
    from ._engine import AsyncEngine

log = get_logger("cacheback.engine")


class EngineAdmin:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _store(self) -> Store:
        store = self._engine.store
        if store is None or not self._engine.running:
            raise EngineClosed("the cache engine is not open (use 'async with' or open())")
        return store

    async def evict_expired(self) -> int:
        n = await self._store().maintenance.evict_expired(time.time())
        if n:
            self._engine.hot.bump()
            self._engine.stats.count("expired", n)
        return n

    async def clear(self, namespace: str | None = None) -> int:
        store = self._store()
        if namespace is None:
            n = await store.maintenance.clear(None)
        else:
            entries = await store.maintenance.list(limit=10**9)
            ids = [e.id for e in entries if e.metadata.get("namespace") == namespace]
            n = await store.entries.delete(ids)
        self._engine.forget_all()
        return n

    async def delete(self, ids: Sequence[int]) -> int:
        n = await self._store().entries.delete(list(ids))
        self._engine.forget_all()
        return n

    async def report_wrong_hit(self, entry_id: int) -> bool:
        """Remove an entry that served a wrong answer, so the mistake is not repeated."""
        n = await self.delete([entry_id])
        self._engine.stats.count("wrong_hits_reported")
        return n > 0

    async def entries(self, limit: int = 100, offset: int = 0) -> list[CacheEntry]:
        """Stored entries, newest first (expired ones included)."""
        return await self._store().maintenance.list(limit, offset)

    async def get(self, entry_id: int) -> CacheEntry | None:
        return await self._store().entries.get(entry_id)

    async def count(self) -> int:
        return await self._store().maintenance.count()

    async def stats(self) -> dict[str, Any]:
        """Counters, sizes, queues and health. A failing store never makes this raise."""
        engine = self._engine
        store = self._store()
        out = engine.stats.summary()
        out["entries"] = None  # unknown while the store is broken (see "cache")
        out["negative_entries"] = engine.blocklist.size
        if engine.store_usable():
            try:
                out["entries"] = await store.maintenance.count()
                out["negative_entries"] = await store.blocklist.count()
            except CachebackError as exc:
                log.warning("stats could not read the store", error=repr(exc))
        out["latency_ms"] = engine.stats.latency()
        out["embedder"] = engine.embedder.describe() if engine.embedder is not None else None
        # why none runs (exact matches only) or why it is a fallback; None when all is well
        out["embedder_reason"] = engine.embedder_reason()
        out["store"] = store.describe()
        out["cache"] = engine.health()
        out.update(engine.runtime_stats())
        out["synthesis"] = {
            "llm": _describe(engine.llm),
            "attempts": {
                k.split(".", 1)[1]: int(engine.stats.total(k))
                for k in sorted({*engine.stats.base, *engine.stats.session})
                if k.startswith("synthesis.")
            },
        }
        s = engine.settings
        out["settings"] = {
            "similarity_threshold": s.matching.similarity_threshold,
            "synthesis_threshold": s.synthesis.synthesis_threshold,
            "synthesis_mode": s.synthesis.synthesis_mode,
            "cache_ttl": s.storage.cache_ttl,
            "max_entries": s.storage.max_entries,
            "guard_enabled": s.matching.guard_enabled,
        }
        for section, describe in engine.describers.items():  # sections the surfaces add
            out[section] = describe()
        return out


def _describe(llm: LLM | None) -> dict[str, Any] | None:
    if llm is None:
        return None
    describe = getattr(llm, "describe", None)
    return describe() if callable(describe) else {"kind": type(llm).__name__}
