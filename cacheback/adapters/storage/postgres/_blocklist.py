"""The negative cache on PostgreSQL: one table, and a copy of it in each replica's memory.

The negative gate searches the blocklist on every request that may be blocked; a round
trip each time would cost more than the search. Each replica keeps the whole list (it
stays small) as a matrix and ranks it exactly in memory. The copy is trusted only while
the change feed listens: every change to the table notifies all replicas (any replica, or
psql), the copy is then stale and reloaded in the background at once, and until the reload
lands a search goes to the database, as it does whenever nobody listens.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from ....core._errors import StoreError
from ....core._types import NegativeEntry, Vector
from .._numpy_index import as_unit_vector
from .._rows import negative_from_row
from ._changes import PgChangeFeed
from ._connection import Connection
from ._entries import dumps_metadata

log = structlog.get_logger("cacheback.store.postgres")

_COLS = "id, query, reason, category, severity, false_positives, created_at, metadata"


_ALL = f"SELECT {_COLS}, vector FROM negatives ORDER BY id"
_INLINE_ROWS = 512  # below this many entries scoring on the loop beats a thread hop


@dataclass(frozen=True, slots=True)
class _Copy:
    version: int  # the change count it was loaded at (current while nothing changed since)
    entries: list[NegativeEntry]
    vectors: Vector  # unit rows, one per entry


class PgBlocklist:
    def __init__(self, db: Connection, feed: PgChangeFeed) -> None:
        self._db = db
        self._feed = feed
        self._changes = 0  # blocklist changes heard of (notices, our own writes, re-listens)
        self._copy: _Copy | None = None
        self._reload: asyncio.Task[None] | None = None
        self.reloads = 0
        self.searched_in_memory = 0
        feed.on_negatives(self.changed)

    def changed(self) -> None:
        """The blocklist may have changed: the copy is stale; reload it now."""
        self._changes += 1
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._reload_copy())

    async def _reload_copy(self) -> None:
        """Until the copy is as new as the last change heard of (a change during the load
        leaves it stale: load again)."""
        while self._db.healthy and (self._copy is None or self._copy.version != self._changes):
            version = self._changes
            try:
                rows = await self._db.run(lambda c: c.fetch(_ALL), budget=self._db.slow)
            except StoreError as exc:  # searches go to the database; the next change retries
                log.warning("store.postgres_blocklist_reload_failed", error=str(exc))
                return
            dim = self._db.dim
            entries = [negative_from_row(r) for r in rows]
            vectors = np.stack([r[8] for r in rows]) if rows else np.empty((0, dim), dtype=np.float32)
            self._copy = _Copy(version, entries, vectors.astype(np.float32, copy=False))
            self.reloads += 1

    def _current(self) -> _Copy | None:
        """The in-memory copy if it is known to be current, else None."""
        copy = self._copy
        if copy is None or copy.version != self._changes or not self._feed.listening:
            return None
        return copy

    def known_count(self) -> int | None:
        copy = self._current()
        return None if copy is None else len(copy.entries)

    async def stop(self) -> None:
        task, self._reload = self._reload, None
        self._copy = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        vec = as_unit_vector(vector, self._db.dim)
        sql = (
            "INSERT INTO negatives (query, vector, reason, category, severity, created_at, metadata)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        )
        args = (query, vec, reason, category, int(severity), now, dumps_metadata(metadata))
        try:
            return int(await self._db.run(lambda c: c.fetchval(sql, *args), budget=self._db.slow))
        finally:
            self.changed()  # read-your-writes, before our own notice comes back

    async def search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
        if k <= 0:
            return []
        vec = as_unit_vector(vector, self._db.dim)
        copy = self._current()
        if copy is not None:
            self.searched_in_memory += 1
            return await _rank(copy, vec, k)
        sql = f"SELECT {_COLS}, vector <=> $1 FROM negatives ORDER BY vector <=> $1, id LIMIT $2"
        rows = await self._db.run(lambda c: c.fetch(sql, vec, k))
        return [(negative_from_row(r), 1.0 - float(r[8])) for r in rows]

    async def get(self, entry_id: int) -> NegativeEntry | None:
        sql = f"SELECT {_COLS} FROM negatives WHERE id = $1"
        row = await self._db.run(lambda c: c.fetchrow(sql, int(entry_id)), budget=self._db.slow)
        return None if row is None else negative_from_row(row)

    async def list(self, category: str | None = None, limit: int | None = None) -> list[NegativeEntry]:
        sql = f"SELECT {_COLS} FROM negatives WHERE ($1::text IS NULL OR category = $1) ORDER BY id LIMIT $2"
        rows = await self._db.run(lambda c: c.fetch(sql, category, limit), budget=self._db.slow)
        return [negative_from_row(r) for r in rows]

    async def remove(self, entry_id: int) -> bool:
        sql = "DELETE FROM negatives WHERE id = $1 RETURNING id"
        try:
            found = await self._db.run(lambda c: c.fetchval(sql, int(entry_id)), budget=self._db.slow)
        finally:
            self.changed()
        return found is not None

    async def report_false_positive(self, entry_id: int) -> int:
        sql = (
            "UPDATE negatives SET false_positives = false_positives + 1 WHERE id = $1"
            " RETURNING false_positives"
        )
        try:
            value = await self._db.run(lambda c: c.fetchval(sql, int(entry_id)), budget=self._db.slow)
        finally:
            self.changed()
        return -1 if value is None else int(value)

    async def count(self) -> int:
        known = self.known_count()
        if known is not None:
            return known
        sql = "SELECT count(*) FROM negatives"
        return int(await self._db.run(lambda c: c.fetchval(sql), budget=self._db.slow))


async def _rank(copy: _Copy, query: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
    """Exact cosine ranking of the copy, best first (ties: the older entry first, as the
    database orders them)."""
    if not copy.entries:
        return []
    if len(copy.entries) > _INLINE_ROWS:
        sims = await asyncio.to_thread(np.matmul, copy.vectors, query)
    else:
        sims = copy.vectors @ query
    order = np.argsort(-sims, kind="stable")[:k]
    return [(copy.entries[i], float(sims[i])) for i in order.tolist()]


class PgCounters:
    """Cumulative counters: every replica adds its deltas to the same rows."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    async def load(self) -> dict[str, float]:
        sql = "SELECT name, value FROM counters"
        rows = await self._db.run(lambda c: c.fetch(sql), budget=self._db.slow)
        return {str(r[0]): float(r[1]) for r in rows}

    async def add(self, deltas: dict[str, float]) -> None:
        if not deltas:
            return
        names = sorted(deltas)  # one lock order for every replica: no deadlocks
        sql = (
            "INSERT INTO counters (name, value) SELECT * FROM unnest($1::text[], $2::float8[])"
            " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
        )
        values = [float(deltas[n]) for n in names]
        await self._db.run(lambda c: c.execute(sql, names, values), budget=self._db.slow)
