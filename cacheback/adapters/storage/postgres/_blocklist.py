"""The negative cache on PostgreSQL: one table, searched exactly (it stays small)."""

from __future__ import annotations

from typing import Any

from ....core._types import NegativeEntry, Vector
from .._numpy_index import as_unit_vector
from .._rows import loads_metadata
from ._connection import Connection
from ._entries import dumps_metadata

_COLS = "id, query, reason, category, severity, false_positives, created_at, metadata"


def _negative(row: Any) -> NegativeEntry:
    return NegativeEntry(
        id=int(row[0]),
        query=row[1],
        reason=row[2],
        category=row[3],
        severity=int(row[4]),
        false_positives=int(row[5]),
        created_at=float(row[6]),
        metadata=loads_metadata(row[7]),
    )


class PgBlocklist:
    def __init__(self, db: Connection) -> None:
        self._db = db

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
        return int(await self._db.run(lambda c: c.fetchval(sql, *args), budget=self._db.slow))

    async def search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
        if k <= 0:
            return []
        vec = as_unit_vector(vector, self._db.dim)
        sql = f"SELECT {_COLS}, vector <=> $1 FROM negatives ORDER BY vector <=> $1, id LIMIT $2"
        rows = await self._db.run(lambda c: c.fetch(sql, vec, k))
        return [(_negative(r), 1.0 - float(r[8])) for r in rows]

    async def get(self, entry_id: int) -> NegativeEntry | None:
        sql = f"SELECT {_COLS} FROM negatives WHERE id = $1"
        row = await self._db.run(lambda c: c.fetchrow(sql, int(entry_id)), budget=self._db.slow)
        return None if row is None else _negative(row)

    async def list(self, category: str | None = None, limit: int | None = None) -> list[NegativeEntry]:
        sql = f"SELECT {_COLS} FROM negatives WHERE ($1::text IS NULL OR category = $1) ORDER BY id LIMIT $2"
        rows = await self._db.run(lambda c: c.fetch(sql, category, limit), budget=self._db.slow)
        return [_negative(r) for r in rows]

    async def remove(self, entry_id: int) -> bool:
        sql = "DELETE FROM negatives WHERE id = $1 RETURNING id"
        return await self._db.run(lambda c: c.fetchval(sql, int(entry_id)), budget=self._db.slow) is not None

    async def report_false_positive(self, entry_id: int) -> int:
        sql = (
            "UPDATE negatives SET false_positives = false_positives + 1 WHERE id = $1"
            " RETURNING false_positives"
        )
        value = await self._db.run(lambda c: c.fetchval(sql, int(entry_id)), budget=self._db.slow)
        return -1 if value is None else int(value)

    async def count(self) -> int:
        sql = "SELECT count(*) FROM negatives"
        return int(await self._db.run(lambda c: c.fetchval(sql), budget=self._db.slow))


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
