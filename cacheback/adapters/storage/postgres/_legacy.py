"""The engine's current single ``Store`` protocol over the split ports (temporary).

The engine still speaks the one-object protocol of ``cacheback/core/_ports.py``; until it
moves to ``cacheback/core/_store_ports.py`` this bridge lets it run on ``PostgresStore``.
It also keeps an unreachable database from failing the engine's start: the counters and the
blocklist size read while opening fall back to empty (counters added later still land in
the database, and the blocklist size is re-read every second).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from ....core._errors import StoreError
from ....core._types import CacheEntry, NegativeEntry, NewEntry, Vector
from ._store import PostgresStore

if TYPE_CHECKING:
    from ....core._ports import Store

log = structlog.get_logger("cacheback.store.postgres")


class LegacyBridge:
    def __init__(self, store: PostgresStore) -> None:
        self.inner = store

    async def open(self) -> None:
        try:
            await self.inner.open()
        except StoreError as exc:  # unreachable: degraded, reconnecting in the background
            log.warning("store unreachable at start; running degraded", error=str(exc))

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    # -- entries and changes -----------------------------------------------------------------

    async def find_exact(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        return await self.inner.entries.find_exact(scope, query_hash, now)

    @property
    def deletions(self) -> int:
        return self.inner.changes.deletions

    def scope_size(self, scope: str) -> int | None:
        return self.inner.entries.scope_size(scope)

    def deleted_since(self, count: int) -> list[int] | None:
        return self.inner.changes.deleted_since(count)

    async def sync(self) -> None:
        await self.inner.changes.sync()

    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        return await self.inner.entries.search(scope, vector, k, now)

    async def put(self, entries: Sequence[NewEntry]) -> list[int]:
        return await self.inner.entries.put(entries)

    async def touch(self, ids: Sequence[int], now: float) -> None:
        await self.inner.entries.touch(ids, now)

    async def get(self, entry_id: int) -> CacheEntry | None:
        return await self.inner.entries.get(entry_id)

    async def delete(self, ids: Sequence[int]) -> int:
        return await self.inner.entries.delete(ids)

    async def evict_expired(self, now: float) -> int:
        return await self.inner.maintenance.evict_expired(now)

    async def clear(self, scope_prefix: str | None = None) -> int:
        return await self.inner.maintenance.clear(scope_prefix)

    async def count(self) -> int:
        return await self.inner.maintenance.count()

    async def entries(self, limit: int = 100, offset: int = 0) -> list[CacheEntry]:
        return await self.inner.maintenance.list(limit, offset)

    # -- blocklist and counters ----------------------------------------------------------------

    async def negative_add(
        self,
        query: str,
        vector: Vector,
        reason: str,
        category: str,
        severity: int,
        metadata: dict[str, Any],
        now: float,
    ) -> int:
        return await self.inner.blocklist.add(query, vector, reason, category, severity, metadata, now)

    async def negative_search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
        return await self.inner.blocklist.search(vector, k)

    async def negative_get(self, entry_id: int) -> NegativeEntry | None:
        return await self.inner.blocklist.get(entry_id)

    async def negative_list(
        self, category: str | None = None, limit: int | None = None
    ) -> list[NegativeEntry]:
        return await self.inner.blocklist.list(category, limit)

    async def negative_remove(self, entry_id: int) -> bool:
        return await self.inner.blocklist.remove(entry_id)

    async def negative_report_false_positive(self, entry_id: int) -> int:
        return await self.inner.blocklist.report_false_positive(entry_id)

    async def negative_count(self) -> int:
        try:
            return await self.inner.blocklist.count()
        except StoreError:
            if self.inner.connection.healthy:
                raise
            return 0  # down: the engine's sync loop reads it again once the database is back

    async def load_counters(self) -> dict[str, float]:
        try:
            return await self.inner.counters.load()
        except StoreError:
            if self.inner.connection.healthy:
                raise
            return {}

    async def add_counters(self, deltas: dict[str, float]) -> None:
        await self.inner.counters.add(deltas)


if TYPE_CHECKING:
    _conforms: type[Store] = LegacyBridge
