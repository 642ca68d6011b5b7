"""Copy an embedded cache directory into the PostgreSQL store, vectors included.

No re-embedding: vectors are read from SQLite as stored. Resumable: the last copied source
id is recorded in the destination in the same transaction as each batch (keyed by the
source database's id), so a second run continues where an interrupted one stopped and a
finished one copies nothing twice. The blocklist and the counters are copied once, each in
one transaction. Expired entries are not copied.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ....core._errors import ConfigError
from .._index_files import DB_FILE
from . import _codec
from ._store import PostgresStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class MigrationReport:
    entries_copied: int
    resumed: bool  # an earlier run had copied some already
    negatives_copied: int
    counters_copied: bool


class _Source:
    """The SQLite file, read-only (the cache may be in use meanwhile)."""

    def __init__(self, directory: str) -> None:
        path = Path(directory).expanduser() / DB_FILE
        if not path.is_file():
            raise ConfigError(f"no cache database at {path}")
        self._conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        columns = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(entries)")}
        # A file written before schema version 2 has no per-entry thresholds.
        self._threshold = "hit_threshold" if "hit_threshold" in columns else "NULL"

    def meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def count_live(self, after: int, now: float) -> int:
        sql = "SELECT count(*) FROM entries WHERE id > ? AND expires_at > ?"
        return int(self._conn.execute(sql, (after, now)).fetchone()[0])

    def entries(self, after: int, now: float, limit: int) -> list[tuple[Any, ...]]:
        return self._conn.execute(
            "SELECT id, scope, query_hash, created_at, expires_at, last_access, hits, vector, query,"
            f" answer, payload, metadata, {self._threshold} FROM entries"
            " WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?",
            (after, now, limit),
        ).fetchall()

    def negatives(self) -> list[tuple[Any, ...]]:
        return self._conn.execute(
            "SELECT query, vector, reason, category, severity, false_positives, created_at, metadata"
            " FROM negatives ORDER BY id"
        ).fetchall()

    def counters(self) -> list[tuple[str, float]]:
        return [(str(r[0]), float(r[1])) for r in self._conn.execute("SELECT name, value FROM counters")]

    def close(self) -> None:
        self._conn.close()


def _vector(blob: bytes | None, dim: int) -> bytes | None:
    if blob is None or len(blob) != dim * 4:
        return None  # exact-only in the source (or unreadable): exact-only here too
    return _codec.encode(np.frombuffer(blob, dtype="<f4"))


async def migrate_directory(
    source_dir: Path | str, url: str, *, batch: int = 500, progress: Progress | None = None
) -> MigrationReport:
    source = await anyio.to_thread.run_sync(_Source, str(source_dir))
    try:
        dim = await anyio.to_thread.run_sync(source.meta, "dim")
        db_id = await anyio.to_thread.run_sync(source.meta, "db_id")
        if dim is None or db_id is None:
            raise ConfigError(f"{source_dir} holds no cacheback entries (no dimension recorded)")
        # No cap while copying: the replicas evict down to theirs on their next write.
        store = PostgresStore(url, int(dim), max_entries=2**62, timeout=60.0)
        await store.open()
        try:
            if not store.connection.healthy:
                raise ConfigError(f"cannot reach the PostgreSQL store: {store.connection.reason}")
            return await _copy(source, store, str(db_id), int(dim), batch, progress)
        finally:
            await store.close()
    finally:
        await anyio.to_thread.run_sync(source.close)


async def _copy(
    source: _Source, store: PostgresStore, db_id: str, dim: int, batch: int, progress: Progress | None
) -> MigrationReport:
    db = store.connection
    mark = f"migrated:{db_id}"
    now = time.time()
    after = int(
        await db.run(lambda c: c.fetchval("SELECT value FROM meta WHERE key = $1", mark + ":entries")) or 0
    )
    done_before = after > 0
    remaining = await anyio.to_thread.run_sync(source.count_live, after, now)
    copied = 0
    if progress is not None:
        progress(0, remaining)
    while rows := await anyio.to_thread.run_sync(source.entries, after, now, batch):
        last = int(rows[-1][0])

        async def write(c: Any, rows: list[tuple[Any, ...]] = rows, last: int = last) -> None:
            inserted = await c.fetch(
                "INSERT INTO entries (scope, query_hash, created_at, expires_at, vector, query, answer,"
                " payload, metadata) SELECT * FROM unnest($1::text[], $2::text[], $3::float8[],"
                " $4::float8[], $5::vector[], $6::text[], $7::text[], $8::bytea[], $9::text[])"
                " ON CONFLICT (scope, query_hash) DO NOTHING RETURNING id, scope, query_hash",
                [r[1] for r in rows],
                [r[2] for r in rows],
                [float(r[3]) for r in rows],
                [float(r[4]) for r in rows],
                [_vector(r[7], dim) for r in rows],
                [r[8] for r in rows],
                [r[9] for r in rows],
                [None if r[10] is None else bytes(r[10]) for r in rows],
                [r[11] or "{}" for r in rows],
            )
            access = {
                (r[1], r[2]): (float(r[5]), int(r[6]), None if r[12] is None else float(r[12])) for r in rows
            }
            await c.executemany(
                "INSERT INTO entry_access (id, last_access, hits, hit_threshold) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                [(r[0], *access[(r[1], r[2])]) for r in inserted],
            )
            await c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
                mark + ":entries",
                last,
            )

        await db.transaction(write)
        after = last
        copied += len(rows)
        if progress is not None:
            progress(copied, remaining)
    negatives = await _copy_once(db, mark + ":negatives", source, dim)
    counters = await _copy_counters_once(db, mark + ":counters", source)
    return MigrationReport(copied, done_before, negatives, counters)


async def _claim(c: Any, key: str) -> bool:
    """Whether this transaction is the first to do the step named ``key``."""
    row = await c.fetchval(
        "INSERT INTO meta (key, value) VALUES ($1, 1) ON CONFLICT (key) DO NOTHING RETURNING value", key
    )
    return row is not None


async def _copy_once(db: Any, key: str, source: _Source, dim: int) -> int:
    rows = await anyio.to_thread.run_sync(source.negatives)

    async def write(c: Any) -> int:
        if not await _claim(c, key):
            return 0
        good = [r for r in rows if _vector(r[1], dim) is not None]
        await c.executemany(
            "INSERT INTO negatives (query, vector, reason, category, severity, false_positives,"
            " created_at, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (r[0], _vector(r[1], dim), r[2], r[3], int(r[4]), int(r[5]), float(r[6]), r[7] or "{}")
                for r in good
            ],
        )
        return len(good)

    return int(await db.transaction(write))


async def _copy_counters_once(db: Any, key: str, source: _Source) -> bool:
    rows = await anyio.to_thread.run_sync(source.counters)

    async def write(c: Any) -> bool:
        if not await _claim(c, key):
            return False
        await c.executemany(
            "INSERT INTO counters (name, value) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            sorted(rows),
        )
        return True

    return bool(await db.transaction(write))
