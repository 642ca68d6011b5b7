"""Entries and maintenance on PostgreSQL: exact tier by hash, scoped HNSW search, the write path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ....core._errors import StoreError
from ....core._store_ports import ExactQuery, SearchQuery
from ....core._types import CacheEntry, NewEntry, Vector
from .._ef_rule import ef_for_size
from .._numpy_index import as_unit_vector
from .._rows import entry_from_row
from . import _codec
from ._connection import Connection

_COLS = (
    "e.id, e.scope, e.query, e.answer, e.payload, e.created_at, e.expires_at,"
    " a.last_access, a.hits, e.metadata, a.hit_threshold, e.vector"
)
_N_COLS = _COLS.count(",") + 1
_FROM = "entries AS e JOIN entry_access AS a ON a.id = e.id"


def dumps_metadata(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str)


def to_entry(row: Any) -> CacheEntry:
    return entry_from_row(row, row[11])


# The function (schema version 3) picks exact ranking or HNSW by the scope's size; with
# hnsw.iterative_scan = relaxed_order the HNSW scan continues until it has k rows of the
# scope, possibly slightly out of order: re-sorted here.
_SEARCH = f"""
SELECT {_COLS}, s.distance, s.big FROM search($1, $2, $3, $4, $5, $6) AS s
JOIN entries AS e ON e.id = s.id JOIN entry_access AS a ON a.id = e.id
"""
# The same for a micro-batch of (vector, scope, known, now) in one statement; q.n numbers them.
_SEARCH_MANY = f"""
SELECT q.n, {_COLS}, s.distance, s.big
FROM unnest($1::vector[], $2::text[], $3::boolean[], $4::float8[])
    WITH ORDINALITY AS q(v, scope, known, at, n)
CROSS JOIN LATERAL search(q.v, q.scope, q.at, $5, q.known, $6) AS s
JOIN entries AS e ON e.id = s.id JOIN entry_access AS a ON a.id = e.id
"""
# find_exact for a micro-batch of (scope, hash) keys, through the (scope, query_hash) index.
_FIND_MANY = f"""
SELECT {_COLS}, k.scope, k.h FROM unnest($1::text[], $2::text[]) AS k(scope, h)
JOIN {_FROM} ON e.scope = k.scope AND e.query_hash = k.h
WHERE e.expires_at > $3
"""
#: Queries per search statement of a micro-batch; the chunks run on separate connections.
SEARCH_CHUNK = 8
_KNOWN_BIG = 65_536  # scopes remembered as large (a scope that shrinks is still searched right)

#: hnsw.ef_search by the number of entries (log-linear between steps), when not fixed: the
#: smallest measured to find the exact nearest entry of >= 99 % of planted near-duplicates
#: (cosine 0.92-0.98) with m = 16, ef_construction = 64 (loadtests/bench_pg_scale.py,
#: sentence-structured vectors): 64 gave 0.999 at 20k; at 100k 64 gave 0.979 / 0.984 (two
#: builds), 128 0.993, 160 0.995; at 1M 64 gave 0.957 / 0.964, 300 0.987, 400 0.991 / 0.992 / 0.991.
#: Past 1M it stays at 400 (not measured). docs/storage.md.
EF_STEPS: tuple[tuple[int, int], ...] = ((20_000, 64), (100_000, 160), (1_000_000, 400))
_RECOUNT_S = 60.0  # how long a count of the entries stands for the size-adapted breadth
_COUNT = "SELECT value FROM meta WHERE key = 'entries'"


def _over_budget(exc: BaseException) -> bool:
    return isinstance(exc, StoreError) and isinstance(exc.__cause__, TimeoutError)


class PgEntries:
    """The ``Entries`` port. Lookups read PostgreSQL directly: always current, any replica."""

    def __init__(self, db: Connection, max_entries: int, on_deleted: Any) -> None:
        self._db = db
        self._max = max_entries
        self._on_deleted = on_deleted  # records ids this process deleted (the change feed)
        self._big: set[str] = set()  # scopes seen with EXACT_SCOPE_ROWS searchable rows or more
        self._ef = ef_for_size(0, EF_STEPS)  # the size-adapted breadth (unless db.ef_search fixes it)
        self._ef_until = 0.0  # monotonic time after which the entries are counted again

    @property
    def ef_search(self) -> int:
        """The HNSW breadth searches use now (fixed, or adapted to the last count)."""
        return self._db.ef_search if self._db.ef_search is not None else self._ef

    async def _breadth(self) -> int:
        if self._db.ef_search is not None:
            return self._db.ef_search
        now = time.monotonic()
        if now >= self._ef_until:
            self._ef_until = now + _RECOUNT_S
            count = await self._db.run(lambda c: c.fetchval(_COUNT))
            self._ef = ef_for_size(int(count or 0), EF_STEPS)
        return self._ef

    async def find_exact(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        """One key (not part of the ``Entries`` port, which checks a micro-batch at once)."""
        sql = f"SELECT {_COLS} FROM {_FROM} WHERE e.scope = $1 AND e.query_hash = $2 AND e.expires_at > $3"
        row = await self._db.run(lambda c: c.fetchrow(sql, scope, query_hash, now))
        return None if row is None else to_entry(row)

    async def find_exact_many(self, queries: Sequence[ExactQuery]) -> list[CacheEntry | None]:
        """One statement for the micro-batch's keys; rows live at the earliest ``now`` are
        read, each query then drops those expired at its own."""
        out: list[CacheEntry | None] = [None] * len(queries)
        if not queries:
            return out
        earliest = min(q.now for q in queries)
        keys = list(dict.fromkeys((q.scope, q.query_hash) for q in queries))
        scopes, hashes = [k[0] for k in keys], [k[1] for k in keys]
        rows = await self._db.run(lambda c: c.fetch(_FIND_MANY, scopes, hashes, earliest))
        found = {(str(r[_N_COLS]), str(r[_N_COLS + 1])): to_entry(r) for r in rows}
        for i, q in enumerate(queries):
            entry = found.get((q.scope, q.query_hash))
            if entry is not None and entry.expires_at > q.now:
                out[i] = entry
        return out

    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        if k <= 0:
            return []
        query = as_unit_vector(vector, self._db.dim)
        known = scope in self._big
        ef = await self._breadth()
        rows = await self._db.run(lambda c: c.fetch(_SEARCH, query, scope, now, k, known, ef))
        if rows and rows[0][13] and not known:
            self._remember_big(scope)
        out = [(to_entry(r), 1.0 - float(r[12])) for r in rows]
        out.sort(key=lambda pair: -pair[1])
        return out

    async def search_many(
        self, queries: Sequence[SearchQuery], k: int
    ) -> list[list[tuple[CacheEntry, float]]]:
        """The search function once per query, in statements of up to ``SEARCH_CHUNK``
        queries run side by side on the pool's connections.

        One statement for a whole micro-batch (up to 64 lookups) would run its searches one
        after another in one backend: at a few ms each that neared the lookup budget
        (``timeout``) and, past it, turned every lookup of the batch into a miss. In chunks,
        each call carries a few searches and the server spreads them over its cores. A chunk
        past the budget finds nothing for its own queries (they miss, as a slow lookup call
        does; the store counts it in ``timeouts``) while the others keep their answers; any
        other failure, or every chunk past the budget, raises StoreError as one call would.
        """
        if k <= 0 or not queries:
            return [[] for _ in queries]
        ef = await self._breadth()
        if len(queries) <= SEARCH_CHUNK:
            return await self._search_chunk(queries, k, ef)
        parts = [queries[i : i + SEARCH_CHUNK] for i in range(0, len(queries), SEARCH_CHUNK)]
        tasks = [asyncio.ensure_future(self._search_chunk(part, k, ef)) for part in parts]
        try:
            done = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:  # cancelled: stop the chunks still running
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        failed = [r for r in done if isinstance(r, BaseException)]
        if failed and (len(failed) == len(done) or not all(map(_over_budget, failed))):
            raise failed[0]
        out: list[list[tuple[CacheEntry, float]]] = []
        for part, answer in zip(parts, done, strict=True):
            out.extend([[] for _ in part] if isinstance(answer, BaseException) else answer)
        return out

    async def _search_chunk(
        self, queries: Sequence[SearchQuery], k: int, ef: int
    ) -> list[list[tuple[CacheEntry, float]]]:
        """One statement for these queries: the search function once per query."""
        results: list[list[tuple[CacheEntry, float]]] = [[] for _ in queries]
        dim = self._db.dim
        vectors = [_codec.encode(as_unit_vector(q.vector, dim)) for q in queries]
        scopes = [q.scope for q in queries]
        known = [scope in self._big for scope in scopes]
        at = [float(q.now) for q in queries]
        rows = await self._db.run(lambda c: c.fetch(_SEARCH_MANY, vectors, scopes, known, at, k, ef))
        for r in rows:  # q.n, the entry's columns, distance, big
            i = int(r[0]) - 1
            results[i].append((to_entry(r[1:]), 1.0 - float(r[_N_COLS + 1])))
            if r[_N_COLS + 2]:
                self._remember_big(scopes[i])
        for out in results:
            out.sort(key=lambda pair: -pair[1])
        return results

    def _remember_big(self, scope: str) -> None:
        if scope in self._big:
            return
        if len(self._big) >= _KNOWN_BIG:
            self._big.clear()
        self._big.add(scope)

    async def put(self, entries: Sequence[NewEntry]) -> list[int]:
        if not entries:
            return []
        latest: dict[tuple[str, str], NewEntry] = {}
        for entry in entries:  # the same question twice in one batch: the later one wins
            latest[(entry.scope, entry.query_hash)] = entry
        rows = list(latest.values())  # ids follow the batch's order (concurrent writers queue
        # on one advisory lock, so no lock order is needed here)
        dim = self._db.dim
        cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
        for e in rows:
            vec = None if e.vector is None else _codec.encode(as_unit_vector(e.vector, dim))
            values = (
                e.scope, e.query_hash, float(e.created_at), float(e.expires_at), vec,
                e.query, e.answer, e.payload, dumps_metadata(e.metadata),
            )  # fmt: skip
            for col, value in zip(cols, values, strict=True):
                col.append(value)

        async def write(c: Any) -> tuple[dict[tuple[str, str], int], list[int]]:
            # Replacing deletes the old row (its id is reported as deleted to every replica)
            # and inserts a new one. A replica racing us on the same key keeps its own row.
            gone = await c.fetch(
                "DELETE FROM entries AS e USING unnest($1::text[], $2::text[]) AS k(scope, h)"
                " WHERE e.scope = k.scope AND e.query_hash = k.h RETURNING e.id",
                cols[0],
                cols[1],
            )
            inserted = await c.fetch(
                "INSERT INTO entries (scope, query_hash, created_at, expires_at, vector, query, answer,"
                " payload, metadata) SELECT * FROM unnest($1::text[], $2::text[], $3::float8[],"
                " $4::float8[], $5::vector[], $6::text[], $7::text[], $8::bytea[], $9::text[])"
                " ON CONFLICT (scope, query_hash) DO NOTHING RETURNING id, scope, query_hash, created_at",
                *cols,
            )
            await c.executemany(
                "INSERT INTO entry_access (id, last_access) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [(r[0], r[3]) for r in inserted],
            )
            ids = {(r[1], r[2]): int(r[0]) for r in inserted}
            missing = [key for key in latest if key not in ids]
            if missing:
                found = await c.fetch(
                    "SELECT e.id, e.scope, e.query_hash FROM entries AS e"
                    " JOIN unnest($1::text[], $2::text[]) AS k(scope, h)"
                    " ON e.scope = k.scope AND e.query_hash = k.h",
                    [m[0] for m in missing],
                    [m[1] for m in missing],
                )
                ids.update({(r[1], r[2]): int(r[0]) for r in found})
            evicted = await self._evict_past_cap(c)
            return ids, [int(r[0]) for r in gone] + evicted

        ids, deleted = await self._db.transaction(write, budget=self._db.slow)
        self._on_deleted(deleted)
        return [ids.get((e.scope, e.query_hash), -1) for e in entries]

    async def _evict_past_cap(self, c: Any) -> list[int]:
        """Least recently used first, counted over every replica's entries. SKIP LOCKED: two
        replicas evicting at once take different rows instead of waiting on each other."""
        total = int(await c.fetchval("SELECT value FROM meta WHERE key = 'entries'"))
        if total <= self._max:
            return []
        rows = await c.fetch(
            "DELETE FROM entries WHERE id IN (SELECT id FROM entry_access ORDER BY last_access, id"
            " LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id",
            total - self._max,
        )
        return [int(r[0]) for r in rows]

    async def attach_vectors(self, ids: Sequence[int], vectors: Vector) -> None:
        if not ids:
            return
        mat = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        vecs = [_codec.encode(as_unit_vector(row, self._db.dim)) for row in mat]
        sql = (
            "UPDATE entries AS e SET vector = v.vector FROM unnest($1::bigint[], $2::vector[])"
            " AS v(id, vector) WHERE e.id = v.id"
        )
        await self._db.run(lambda c: c.execute(sql, [int(i) for i in ids], vecs), budget=self._db.slow)

    async def unindexed(self, limit: int) -> list[CacheEntry]:
        sql = (
            f"SELECT {_COLS} FROM {_FROM} WHERE e.vector IS NULL"
            " AND e.expires_at > extract(epoch FROM clock_timestamp()) ORDER BY e.id LIMIT $1"
        )
        rows = await self._db.run(lambda c: c.fetch(sql, limit), budget=self._db.slow)
        return [to_entry(r) for r in rows]

    async def touch(self, ids: Sequence[int], now: float) -> None:
        if not ids:
            return
        # One hit per occurrence of an id (the persister gathers touches between writes).
        sql = (
            "UPDATE entry_access a SET last_access = greatest(a.last_access, $2), hits = a.hits + t.n"
            " FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) t"
            " WHERE a.id = t.id"
        )
        await self._db.run(lambda c: c.execute(sql, sorted(int(i) for i in ids), now), budget=self._db.slow)

    async def get(self, entry_id: int) -> CacheEntry | None:
        sql = f"SELECT {_COLS} FROM {_FROM} WHERE e.id = $1"
        row = await self._db.run(lambda c: c.fetchrow(sql, int(entry_id)), budget=self._db.slow)
        return None if row is None else to_entry(row)

    async def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        sql = "DELETE FROM entries WHERE id = ANY($1::bigint[]) RETURNING id"
        rows = await self._db.transaction(lambda c: c.fetch(sql, [int(i) for i in ids]), budget=self._db.slow)
        self._on_deleted([int(r[0]) for r in rows])
        return len(rows)

    def scope_size(self, scope: str) -> int | None:
        return None  # would cost a round trip; the lookup embeds and searches instead


class PgMaintenance:
    """The ``Maintenance`` port: sweeps and operator actions, over every replica's entries."""

    _BATCH = 5000

    def __init__(self, db: Connection, on_deleted: Any) -> None:
        self._db = db
        self._on_deleted = on_deleted

    async def evict_expired(self, now: float) -> int:
        """Short transactions, so the sweep never holds up the replicas' writes."""
        removed = 0
        sql = (
            "DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE expires_at <= $1"
            " LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id"
        )
        while True:
            rows = await self._db.transaction(lambda c: c.fetch(sql, now, self._BATCH), budget=self._db.slow)
            self._on_deleted([int(r[0]) for r in rows])
            removed += len(rows)
            if len(rows) < self._BATCH:
                return removed

    async def clear(self, scope_prefix: str | None = None) -> int:
        args: tuple[Any, ...] = ()
        if scope_prefix is None:
            sql = "DELETE FROM entries RETURNING id"
        else:  # left(), not LIKE: no wildcards in a prefix
            sql, args = (
                "DELETE FROM entries WHERE left(scope, $1) = $2 RETURNING id",
                (len(scope_prefix), scope_prefix),
            )
        rows = await self._db.transaction(lambda c: c.fetch(sql, *args), budget=self._db.slow)
        self._on_deleted([int(r[0]) for r in rows])
        return len(rows)

    async def count(self) -> int:
        sql = "SELECT value FROM meta WHERE key = 'entries'"
        return int(await self._db.run(lambda c: c.fetchval(sql), budget=self._db.slow))

    async def list(self, limit: int = 100, offset: int = 0, *, before: int | None = None) -> list[CacheEntry]:
        if before is None:
            sql = f"SELECT {_COLS} FROM {_FROM} ORDER BY e.id DESC LIMIT $1 OFFSET $2"
            rows = await self._db.run(lambda c: c.fetch(sql, limit, offset), budget=self._db.slow)
        else:  # keyset paging: the primary key walked from that id, no rows skipped
            sql = f"SELECT {_COLS} FROM {_FROM} WHERE e.id < $3 ORDER BY e.id DESC LIMIT $1 OFFSET $2"
            rows = await self._db.run(lambda c: c.fetch(sql, limit, offset, before), budget=self._db.slow)
        return [to_entry(r) for r in rows]

    async def set_hit_threshold(self, entry_id: int, threshold: float | None) -> bool:
        sql = "UPDATE entry_access SET hit_threshold = $2 WHERE id = $1"
        status = await self._db.run(lambda c: c.execute(sql, int(entry_id), threshold), budget=self._db.slow)
        return str(status).endswith(" 1")
