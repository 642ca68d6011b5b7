"""The embedded store's small parts: the change feed, the blocklist and the counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np

from ...core._types import NegativeEntry, Vector
from ._embedded_entries import INLINE_ROWS, vector_blob
from ._index_files import matrix
from ._numpy_index import as_unit_vector
from ._store_errors import StoreHealth, store_errors

if TYPE_CHECKING:
    from ...core._store_ports import Blocklist, ChangeFeed, Counters
    from ._embedded import EmbeddedStore


class EmbeddedChanges:
    """Deletions applied from the changes log (by any process sharing the directory)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._s = store

    @property
    def health(self) -> StoreHealth:
        return self._s.health

    @property
    def deletions(self) -> int:
        return self._s.deletions

    def deleted_since(self, count: int) -> list[int] | None:
        """Ids deleted after the ``count``-th deletion, or None if that is too long ago."""
        recent = self._s.recent_deletions
        missed = self._s.deletions - count
        if missed <= 0:
            return []
        if missed > len(recent):
            return None
        return list(recent)[-missed:]

    @store_errors
    async def sync(self) -> None:
        """Catch up on other processes' writes now (the engine calls this periodically)."""
        await self._s.refresh()


class EmbeddedBlocklist:
    """The negative list in SQLite, searched from an in-memory matrix that follows it."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._s = store
        self._lock = anyio.Lock()
        self._seen_dv: int | None = None
        self._version = -1
        self._entries: list[NegativeEntry] = []
        self._vecs: Vector = np.empty((0, store.dim), dtype=np.float32)

    @property
    def health(self) -> StoreHealth:
        return self._s.health

    def forget(self) -> None:
        """Drop the in-memory copy (the store closed or reopened)."""
        self._seen_dv = None
        self._version = -1

    @store_errors
    async def add(
        self,
        query: str,
        vector: Vector,
        reason: str,
        category: str,
        severity: int,
        metadata: dict[str, Any],
        now: float,
    ) -> int:
        blob = vector_blob(vector, self._s.dim)
        new_id = await self._s.require_db().negative_add(
            query, blob, reason, category, int(severity), metadata, now
        )
        self._version = -1
        return new_id

    @store_errors
    async def search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
        await self._refresh()
        entries, vecs = self._entries, self._vecs
        if not entries or k <= 0:
            return []
        query = as_unit_vector(vector, self._s.dim)
        if len(entries) > INLINE_ROWS:
            sims = await anyio.to_thread.run_sync(np.matmul, vecs, query)
        else:  # a small matrix: cheaper than the thread hop
            sims = vecs @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return [(entries[i], float(sims[i])) for i in order.tolist()]

    async def _refresh(self) -> None:
        db = self._s.require_db()
        dv = await db.data_version()
        if dv == self._seen_dv and self._version >= 0 and not self._lock.locked():
            return
        async with self._lock:
            version = await db.negatives_version()
            if version == self._version:
                self._seen_dv = dv
                return
            rows = await db.negatives_all()
            dim = self._s.dim
            good = [r for r in rows if len(r[1]) == dim * 4]
            self._entries = [r[0] for r in good]
            self._vecs = matrix([r[1] for r in good], dim) if good else np.empty((0, dim), dtype=np.float32)
            self._version = version
            self._seen_dv = dv  # only now: a caller arriving meanwhile waited for this

    @store_errors
    async def get(self, entry_id: int) -> NegativeEntry | None:
        return await self._s.require_db().negative_get(entry_id)

    @store_errors
    async def list(self, category: str | None = None, limit: int | None = None) -> list[NegativeEntry]:
        return await self._s.require_db().negative_list(category, limit)

    @store_errors
    async def remove(self, entry_id: int) -> bool:
        removed = await self._s.require_db().negative_remove(entry_id)
        self._version = -1
        return removed

    @store_errors
    async def report_false_positive(self, entry_id: int) -> int:
        """Increment and return the report count (-1 if the entry does not exist)."""
        count = await self._s.require_db().negative_report_false_positive(entry_id)
        self._version = -1
        return count

    @store_errors
    async def count(self) -> int:
        return await self._s.require_db().negative_count()

    def known_count(self) -> int | None:
        """None: the copy is checked against SQLite's data version on each search (a local
        read, no network), not known current without it."""
        return None


class EmbeddedCounters:
    """Cumulative counters in one SQLite table, added to by every process."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._s = store

    @property
    def health(self) -> StoreHealth:
        return self._s.health

    @store_errors
    async def load(self) -> dict[str, float]:
        return await self._s.require_db().load_counters()

    @store_errors
    async def add(self, deltas: dict[str, float]) -> None:
        await self._s.require_db().add_counters(deltas)


if TYPE_CHECKING:
    _changes: type[ChangeFeed] = EmbeddedChanges  # mypy checks the parts against the ports
    _blocklist: type[Blocklist] = EmbeddedBlocklist
    _counters: type[Counters] = EmbeddedCounters
