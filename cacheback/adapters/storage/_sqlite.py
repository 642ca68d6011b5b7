"""The SQLite half of the embedded store: schema and every SQL statement, run via aiosqlite.

Two connections: one writer (all writes serialise on an anyio lock and run as
``BEGIN IMMEDIATE`` transactions, so concurrent coroutines never share a transaction) and one
reader (WAL lets it read committed data while the writer or another process writes).

Triggers write the ``changes`` log in the same transaction as every insert into or delete from
``entries``, whoever runs the statement (this process, another one, a maintenance script), so the
vector index can always be caught up by replaying ``seq > watermark``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import numpy as np

from ...core._errors import StoreError
from ...core._types import CacheEntry, NegativeEntry, Vector
from ._rows import entry_from_row, negative_from_row
from ._sqlite_fork import GatedConnection, connect

if TYPE_CHECKING:  # _ranking imports this module (through _index_files)
    from ._ranking import Ranking

SCHEMA_VERSION = 2
# Columns added after version 1, with their definitions (ALTER TABLE on open, see
# Database._migrate). 2: the entry's own verbatim threshold, learned from feedback.
_ADDED_COLUMNS = (("entries", "hit_threshold", "REAL", 2),)
MIN_KEEP_CHANGES = 10_000  # changes-log rows kept at least, so lagging readers can replay
_NO_ID_ABOVE = 2**63 - 1  # SQLite's largest rowid: "before" no id at all
_CHUNK = 500  # ids per IN (...) list: far below SQLite's variable limit on every version

_CONNECTION_PRAGMAS = (
    "PRAGMA busy_timeout = 10000",  # first, so the WAL switch below also waits for locks
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",  # WAL + NORMAL: no fsync per commit, still crash-safe
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -8000",  # 8 MB per connection
)

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
    scope TEXT NOT NULL,
    query_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_access REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    -- float32 little-endian; placed before the large text columns so reading vectors never
    -- walks the overflow pages of long answers and payloads
    vector BLOB,
    query TEXT NOT NULL,
    answer TEXT NOT NULL,
    payload BLOB,
    metadata TEXT NOT NULL DEFAULT '{{}}',
    hit_threshold REAL  -- NULL: the global similarity threshold alone (core/_feedback.py)
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_scope_hash ON entries (scope, query_hash);
CREATE INDEX IF NOT EXISTS entries_last_access ON entries (last_access);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at);
-- the indexed rows per scope: loads the scope map on open and serves exact small-scope scans
CREATE INDEX IF NOT EXISTS entries_vector_scope ON entries (scope) WHERE vector IS NOT NULL;
-- rows still waiting for their vector (written before embedding): the catch-up reads these
CREATE INDEX IF NOT EXISTS entries_unindexed ON entries (id) WHERE vector IS NULL;

CREATE TABLE IF NOT EXISTS negatives (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query TEXT NOT NULL,
    vector BLOB NOT NULL,
    reason TEXT NOT NULL,
    category TEXT NOT NULL,
    severity INTEGER NOT NULL,
    false_positives INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS negatives_category ON negatives (category);

CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    entry_id INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS entries_log_add AFTER INSERT ON entries BEGIN
    INSERT INTO changes (op, entry_id) VALUES ('add', NEW.id);
END;
-- a row written without its vector becomes searchable when it gets one: logged as an add
CREATE TRIGGER IF NOT EXISTS entries_log_vector AFTER UPDATE OF vector ON entries
WHEN OLD.vector IS NULL AND NEW.vector IS NOT NULL BEGIN
    INSERT INTO changes (op, entry_id) VALUES ('add', NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS entries_log_del AFTER DELETE ON entries BEGIN
    INSERT INTO changes (op, entry_id) VALUES ('del', OLD.id);
END;
-- any change to the negative list bumps a version that readers poll to refresh their copy
CREATE TRIGGER IF NOT EXISTS negatives_bump_ins AFTER INSERT ON negatives BEGIN
    UPDATE store_meta SET value = value + 1 WHERE key = 'negatives_version';
END;
CREATE TRIGGER IF NOT EXISTS negatives_bump_del AFTER DELETE ON negatives BEGIN
    UPDATE store_meta SET value = value + 1 WHERE key = 'negatives_version';
END;
CREATE TRIGGER IF NOT EXISTS negatives_bump_upd AFTER UPDATE ON negatives BEGIN
    UPDATE store_meta SET value = value + 1 WHERE key = 'negatives_version';
END;

INSERT OR IGNORE INTO store_meta (key, value) VALUES
    ('schema_version', {SCHEMA_VERSION}),  -- an older file is brought up by Database._migrate
    ('db_id', lower(hex(randomblob(16)))),
    ('pruned_through', 0),
    ('negatives_version', 0);
COMMIT;
"""

_ENTRY_COLS = (
    "id, scope, query, answer, payload, created_at, expires_at, last_access, hits, metadata, hit_threshold"
)
#: A scan of small scopes: per scope, per query, (entry, similarity) best first.
Scanned = dict[str, list[list[tuple[CacheEntry, float]]]]

_NEG_COLS = "id, query, reason, category, severity, false_positives, created_at, metadata"

_INSERT_ENTRY = (
    "INSERT INTO entries (scope, query_hash, created_at, expires_at, last_access, hits, vector,"
    " query, answer, payload, metadata) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)"
)

# One row of the changes log joined with the entry it adds (scope and vector are NULL for
# deletions, and for additions whose entry is already gone again or has no vector).
ChangeRow = tuple[int, str, int, str | None, bytes | None]

# A prepared entry row, in the column order of _INSERT_ENTRY.
EntryRow = tuple[str, str, float, float, float, bytes | None, str, str, bytes | None, str]

SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def is_busy(exc: BaseException) -> bool:
    """True for "database is locked" / "database table is locked" (another connection)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (SQLITE_BUSY, SQLITE_LOCKED)
    return "locked" in str(exc).lower()


_FAULT_CODES = (
    SQLITE_CORRUPT,
    SQLITE_NOTADB,
    10,  # SQLITE_IOERR
    8,  # SQLITE_READONLY
    14,  # SQLITE_CANTOPEN
    13,  # SQLITE_FULL
)


def is_fault(exc: BaseException) -> bool:
    """True for failures that last until the file is fixed or reopened (corrupt pages, I/O
    errors, a file that became read-only or unreachable, a full disk), not for busy/locked."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _FAULT_CODES
    text = str(exc).lower()
    return any(w in text for w in ("not a database", "malformed", "disk i/o", "readonly", "unable to open"))


def is_corruption(exc: BaseException) -> bool:
    """True for "file is not a database" and "database disk image is malformed"."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def dumps_metadata(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str)


def _vector(blob: object, dim: int) -> Vector | None:
    """A stored float32 blob as a vector (None when absent or not ``dim`` long)."""
    if not isinstance(blob, bytes) or len(blob) != dim * 4:
        return None
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


async def _connect(path: Path, *, readonly: bool = False) -> GatedConnection:
    conn = await connect(path)  # safe across os.fork(): see _sqlite_fork
    try:
        for pragma in _CONNECTION_PRAGMAS:
            await conn.execute(pragma)
        if readonly:
            await conn.execute("PRAGMA query_only = 1")
    except BaseException:
        with anyio.CancelScope(shield=True):
            await conn.close()
        raise
    return conn


class EntryHits(NamedTuple):
    """An entry's identity and use, without its answer (the dashboard's top list)."""

    id: int
    scope: str
    query: str
    hits: int
    last_access: float


def _live_entries(conn: sqlite3.Connection, ids: Sequence[int], now: float) -> dict[int, CacheEntry]:
    """The live rows among ``ids``, by id (on the connection's own thread)."""
    found: dict[int, CacheEntry] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE id IN ({_marks(len(chunk))}) AND expires_at > ?",
            (*chunk, now),
        ):
            entry = entry_from_row(row)
            found[entry.id] = entry
    return found


def _read_further(
    conn: sqlite3.Connection, ranking: Ranking, out: list[tuple[CacheEntry, float]], k: int, now: float
) -> list[tuple[CacheEntry, float]]:
    """Complete ``out`` (read from the first ``k + 8`` of ``ranking``) to ``k`` entries: rows
    deleted or expired since the ranking was made are skipped by reading further down it,
    in growing windows."""
    start, step = k + 8, 4 * (k + 8)
    while len(out) < k and start < len(ranking):
        window = ranking.window(start, start + step)
        found = _live_entries(conn, [i for i, _ in window], now)
        out.extend((found[i], sim) for i, sim in window if i in found)
        start += step
        step *= 4
    return out


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    """Roll back whatever transaction the connection still holds. Run on the connection's
    own thread, it comes after every call queued before it: aiosqlite still runs a
    statement whose awaiting task was cancelled, so a cancelled writer's ``BEGIN`` may
    start its transaction only after the writer has given up."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class Database:
    """The SQLite file: entries, negatives, counters, the changes log and store metadata."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._w: GatedConnection | None = None
        self._r: GatedConnection | None = None
        self._wlock = anyio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create the schema; raises sqlite3.DatabaseError on a corrupt file."""
        try:
            self._w = await _connect(self.path)
            await self._w.executescript(_SCHEMA)
            rows = await self._w.execute_fetchall("SELECT value FROM store_meta WHERE key = 'schema_version'")
            version = int(next(iter(rows))[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this cacheback reads "
                    f"{SCHEMA_VERSION} (upgrade cacheback or use another cache_dir)"
                )
            if version < SCHEMA_VERSION:
                await self._migrate(version)
            self._r = await _connect(self.path, readonly=True)
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, version: int) -> None:
        """Bring a file of an older schema version to SCHEMA_VERSION, in one transaction.
        Another process may be doing the same: the version is re-read under the write lock,
        and a column already there is not added twice."""
        async with self._write() as w:
            rows = await w.execute_fetchall("SELECT value FROM store_meta WHERE key = 'schema_version'")
            version = int(next(iter(rows))[0])
            for table, column, definition, since in _ADDED_COLUMNS:
                have = {str(r[1]) for r in await w.execute_fetchall(f"PRAGMA table_info({table})")}
                if version < since and column not in have:
                    await w.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            await w.execute(
                "UPDATE store_meta SET value = ? WHERE key = 'schema_version' AND value < ?",
                (SCHEMA_VERSION, SCHEMA_VERSION),
            )

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for conn in (self._r, self._w):
                if conn is not None:
                    await conn.close()
        self._r = self._w = None

    @property
    def reader(self) -> GatedConnection:
        if self._r is None:
            raise StoreError("the store is not open")
        return self._r

    @asynccontextmanager
    async def _write(self, *, durable: bool = False) -> AsyncIterator[GatedConnection]:
        """One write transaction on the writer connection (serialised in this process)."""
        if self._w is None:
            raise StoreError("the store is not open")
        async with self._wlock, self._w.transaction() as w:  # no fork inside a transaction
            if durable:  # fsync this commit (the negative list must survive a power cut)
                await w.execute("PRAGMA synchronous = FULL")
            try:
                try:
                    await w.execute("BEGIN IMMEDIATE")
                    yield w
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await w.run(_rollback_if_open)
                    raise
                with anyio.CancelScope(shield=True):
                    try:
                        await w.execute("COMMIT")
                    except BaseException:  # e.g. an I/O error: the next writer must not inherit it
                        await w.run(_rollback_if_open)
                        raise
            finally:
                if durable:
                    with anyio.CancelScope(shield=True):
                        await w.execute("PRAGMA synchronous = NORMAL")

    async def snapshot(self) -> GatedConnection:
        """A separate connection holding one read transaction (for a consistent full scan)."""
        conn = await _connect(self.path, readonly=True)
        try:
            await conn.execute("BEGIN")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        return conn

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = list(await self.reader.execute_fetchall(sql, params))
        return rows[0][0] if rows else None

    # -- store metadata and the changes log ------------------------------------------------

    async def meta(self, key: str) -> Any:
        return await self._one("SELECT value FROM store_meta WHERE key = ?", (key,))

    async def claim_dim(self, dim: int) -> int:
        """Record the vector dimension on first use; returns the recorded one."""
        async with self._write() as w:
            await w.execute("INSERT OR IGNORE INTO store_meta (key, value) VALUES ('dim', ?)", (dim,))
            rows = list(await w.execute_fetchall("SELECT value FROM store_meta WHERE key = 'dim'"))
        return int(rows[0][0])

    async def data_version(self) -> int:
        """Changes whenever another connection (in this process or another) commits."""
        return int(await self._one("PRAGMA data_version"))

    async def changes_since(self, seq: int, limit: int) -> list[ChangeRow]:
        rows = await self.reader.execute_fetchall(
            "SELECT c.seq, c.op, c.entry_id, e.scope, e.vector FROM changes AS c"
            " LEFT JOIN entries AS e ON c.op = 'add' AND e.id = c.entry_id"
            " WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (seq, limit),
        )
        return [(int(r[0]), str(r[1]), int(r[2]), r[3], r[4]) for r in rows]

    async def prune_changes(self, keep: int) -> int:
        """Drop log rows more than ``keep`` behind the head; returns the new pruned mark."""
        last = await self._last_seq(self.reader)
        pruned = int(await self.meta("pruned_through") or 0)
        cut = last - keep
        if cut <= pruned:
            return pruned
        async with self._write() as w:
            await w.execute("DELETE FROM changes WHERE seq <= ?", (cut,))
            await w.execute(
                "UPDATE store_meta SET value = max(value, ?) WHERE key = 'pruned_through'", (cut,)
            )
        return cut

    @staticmethod
    async def _last_seq(conn: GatedConnection) -> int:
        rows = list(await conn.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'changes'"))
        return int(rows[0][0]) if rows else 0

    async def scope_rows(self) -> list[tuple[int, str]]:
        """(id, scope) of every entry that has a vector, through the covering partial index."""
        rows = await self.reader.execute_fetchall("SELECT id, scope FROM entries WHERE vector IS NOT NULL")
        return [(int(r[0]), str(r[1])) for r in rows]

    @classmethod
    async def snapshot_head(cls, snap: GatedConnection) -> tuple[int, int]:
        """(last changes seq, number of entries with a vector) inside a snapshot."""
        seq = await cls._last_seq(snap)
        rows = list(await snap.execute_fetchall("SELECT count(*) FROM entries WHERE vector IS NOT NULL"))
        return seq, int(rows[0][0])

    @staticmethod
    async def snapshot_vectors(
        snap: GatedConnection, after_id: int, limit: int
    ) -> list[tuple[int, str, bytes]]:
        rows = await snap.execute_fetchall(
            "SELECT id, scope, vector FROM entries WHERE vector IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    # -- entries ---------------------------------------------------------------------------

    async def put(self, rows: Sequence[EntryRow], max_entries: int) -> list[int]:
        """Insert ``rows`` (replacing same scope and hash) and evict LRU rows past the cap.

        ``rows`` must not repeat a (scope, query_hash). Returns the new ids in ``rows`` order.
        """
        async with self._write() as w:
            await w.executemany(
                "DELETE FROM entries WHERE scope = ? AND query_hash = ?",
                [(r[0], r[1]) for r in rows],
            )
            before = list(await w.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'entries'"))
            floor = int(before[0][0]) if before else 0
            await w.executemany(_INSERT_ENTRY, rows)
            # Everything above the old AUTOINCREMENT mark was inserted by this transaction,
            # in order (it holds the write lock): a rowid range scan, no per-key lookups.
            new = await w.execute_fetchall("SELECT id FROM entries WHERE id > ? ORDER BY id", (floor,))
            ids = [int(r[0]) for r in new]
            if len(ids) != len(rows):
                raise StoreError(f"inserted {len(rows)} entries but found {len(ids)} new ids")
            total = int(next(iter(await w.execute_fetchall("SELECT count(*) FROM entries")))[0])
            if total > max_entries:
                await w.execute(
                    "DELETE FROM entries WHERE id IN"
                    " (SELECT id FROM entries ORDER BY last_access, id LIMIT ?)",
                    (total - max_entries,),
                )
        return ids

    async def find_exact(self, scope: str, query_hash: str, now: float, dim: int) -> CacheEntry | None:
        """The live entry with this key, with its vector (when it has one of ``dim``)."""
        rows = list(
            await self.reader.execute_fetchall(
                f"SELECT {_ENTRY_COLS}, vector FROM entries"
                " WHERE scope = ? AND query_hash = ? AND expires_at > ?",
                (scope, query_hash, now),
            )
        )
        return entry_from_row(rows[0], _vector(rows[0][11], dim)) if rows else None

    async def find_exact_many(
        self, queries: Sequence[tuple[str, str, float]], dim: int
    ) -> list[CacheEntry | None]:
        """``find_exact`` for each (scope, hash, now), in order: one statement per scope
        (and per few hundred hashes), through the (scope, query_hash) index. Rows live at
        the earliest ``now`` are read; each query then drops those expired at its own."""
        out: list[CacheEntry | None] = [None] * len(queries)
        if not queries:
            return out
        earliest = min(now for _, _, now in queries)
        by_scope: dict[str, list[str]] = {}
        for scope, query_hash, _ in queries:
            by_scope.setdefault(scope, []).append(query_hash)
        found: dict[tuple[str, str], CacheEntry] = {}
        for scope, hashes in by_scope.items():
            for chunk in _chunks(sorted(set(hashes))):
                rows = await self.reader.execute_fetchall(
                    f"SELECT {_ENTRY_COLS}, vector, query_hash FROM entries WHERE scope = ?"
                    f" AND query_hash IN ({_marks(len(chunk))}) AND expires_at > ?",
                    (scope, *chunk, earliest),
                )
                for r in rows:
                    found[(scope, str(r[12]))] = entry_from_row(r, _vector(r[11], dim))
        for i, (scope, query_hash, now) in enumerate(queries):
            entry = found.get((scope, query_hash))
            if entry is not None and entry.expires_at > now:
                out[i] = entry
        return out

    async def attach_vectors(self, pairs: Sequence[tuple[bytes, int]]) -> None:
        """Set the vector of rows that have none yet; rows gone or already set are skipped."""
        async with self._write() as w:
            await w.executemany("UPDATE entries SET vector = ? WHERE id = ? AND vector IS NULL", pairs)

    async def unindexed(self, limit: int, now: float) -> list[CacheEntry]:
        rows = await self.reader.execute_fetchall(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE vector IS NULL AND expires_at > ? ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [entry_from_row(r) for r in rows]

    async def live_entries(self, ids: Sequence[int], now: float) -> dict[int, CacheEntry]:
        return await self.reader.run(lambda conn: _live_entries(conn, ids, now))

    async def read_further(
        self, ranking: Ranking, out: list[tuple[CacheEntry, float]], k: int, now: float
    ) -> list[tuple[CacheEntry, float]]:
        """``out`` completed to ``k`` from further down ``ranking`` (see ``_read_further``)."""
        return await self.reader.run(lambda conn: _read_further(conn, ranking, out, k, now))

    async def scopes_vectors(self, scopes: Sequence[str], now: float) -> dict[str, list[tuple[int, bytes]]]:
        """(id, vector) of the live rows of each scope, by id; one query for up to 500 scopes."""
        out: dict[str, list[tuple[int, bytes]]] = {}
        for chunk in _chunks(scopes):
            where = "scope = ?" if len(chunk) == 1 else f"scope IN ({_marks(len(chunk))})"
            rows = await self.reader.execute_fetchall(
                f"SELECT scope, id, vector FROM entries WHERE {where} AND vector IS NOT NULL"
                " AND expires_at > ?",
                (*chunk, now),
            )
            for r in rows:
                out.setdefault(str(r[0]), []).append((int(r[1]), bytes(r[2])))
        for found in out.values():
            found.sort()  # already in id order through the scope index: a linear pass
        return out

    async def scan_scopes(
        self, scopes: Mapping[str, Sequence[tuple[Vector, float]]], k: int, dim: int, cap: int
    ) -> tuple[int, Scanned | None]:
        """The exact top ``k`` live entries of small scopes for each (unit query vector, its
        time), best first, in one hand-over to the reader's thread: each scope's vectors read
        once and ranked for all of its queries, then the best rows read (further down the
        ranking only past rows deleted meanwhile). Always current: no index is involved.
        None when a scope holds more than ``cap`` vectors (search it through the index).
        Also returns the ``data_version`` read first (whether others committed meanwhile)."""
        from ._ranking import rank_scopes  # here: _ranking imports this module, through _index_files

        earliest = min(now for queries in scopes.values() for _, now in queries)
        asked = {scope: list(queries) for scope, queries in scopes.items()}

        def work(conn: sqlite3.Connection) -> tuple[int, Scanned | None]:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            results: Scanned = {}
            for scope, queries in asked.items():
                rows = conn.execute(
                    "SELECT id, vector FROM entries WHERE scope = ? AND vector IS NOT NULL"
                    " AND expires_at > ? ORDER BY id LIMIT ?",
                    (scope, earliest, cap + 1),
                ).fetchall()
                if len(rows) > cap:
                    return version, None
                vectors = [(int(r[0]), bytes(r[1])) for r in rows]
                rankings = rank_scopes([(vectors, [q for q, _ in queries])], dim)[0]
                windows = [ranking.window(0, k + 8) for ranking in rankings]
                found = _live_entries(conn, sorted({i for w in windows for i, _ in w}), earliest)
                per_query: list[list[tuple[CacheEntry, float]]] = []
                for ranking, window, (_, now) in zip(rankings, windows, queries, strict=True):
                    out = [(found[i], sim) for i, sim in window if i in found and found[i].expires_at > now]
                    if len(out) < k:
                        _read_further(conn, ranking, out, k, now)
                    per_query.append(out[:k])
                results[scope] = per_query
            return version, results

        return await self.reader.run(work)

    async def touch(self, ids: Sequence[int], now: float) -> None:
        async with self._write() as w:
            await w.executemany(
                "UPDATE entries SET last_access = max(last_access, ?), hits = hits + ? WHERE id = ?",
                [(now, n, i) for i, n in sorted(Counter(int(i) for i in ids).items())],
            )

    async def get(self, entry_id: int) -> CacheEntry | None:
        rows = list(
            await self.reader.execute_fetchall(f"SELECT {_ENTRY_COLS} FROM entries WHERE id = ?", (entry_id,))
        )
        return entry_from_row(rows[0]) if rows else None

    async def set_hit_threshold(self, entry_id: int, threshold: float | None) -> bool:
        async with self._write() as w:
            cur = await w.execute("UPDATE entries SET hit_threshold = ? WHERE id = ?", (threshold, entry_id))
            return cur.rowcount > 0

    async def delete(self, ids: Sequence[int]) -> int:
        removed = 0
        async with self._write() as w:
            for chunk in _chunks(ids):
                cur = await w.execute(f"DELETE FROM entries WHERE id IN ({_marks(len(chunk))})", tuple(chunk))
                removed += max(0, cur.rowcount)
        return removed

    async def evict_expired(self, now: float, batch: int = 5000) -> int:
        """Delete expired rows in short transactions so other writers are not held up."""
        removed = 0
        while True:
            async with self._write() as w:
                cur = await w.execute(
                    "DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE expires_at <= ? LIMIT ?)",
                    (now, batch),
                )
                n = max(0, cur.rowcount)
            removed += n
            if n < batch:
                return removed

    async def clear(self, scope_prefix: str | None) -> int:
        async with self._write() as w:
            if scope_prefix is None:
                cur = await w.execute("DELETE FROM entries")
            else:  # substr, not LIKE: LIKE is case-insensitive and treats % and _ as wildcards
                cur = await w.execute(
                    "DELETE FROM entries WHERE substr(scope, 1, ?) = ?",
                    (len(scope_prefix), scope_prefix),
                )
            return max(0, cur.rowcount)

    async def count(self) -> int:
        return int(await self._one("SELECT count(*) FROM entries"))

    async def top_entries(self, limit: int) -> list[EntryHits]:
        rows = await self.reader.execute_fetchall(
            "SELECT id, scope, query, hits, last_access FROM entries WHERE hits > 0"
            " ORDER BY hits DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [EntryHits(int(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]

    async def entries(self, limit: int, offset: int, before: int | None = None) -> list[CacheEntry]:
        # Keyset paging (``before``) walks the primary key from that id: no rows skipped.
        rows = await self.reader.execute_fetchall(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE id < ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (_NO_ID_ABOVE if before is None else before, limit, offset),
        )
        return [entry_from_row(r) for r in rows]

    # -- negative list ---------------------------------------------------------------------

    async def negatives_version(self) -> int:
        return int(await self.meta("negatives_version") or 0)

    async def negatives_all(self) -> list[tuple[NegativeEntry, bytes]]:
        rows = await self.reader.execute_fetchall(f"SELECT {_NEG_COLS}, vector FROM negatives ORDER BY id")
        return [(negative_from_row(r), bytes(r[8])) for r in rows]

    async def negative_add(
        self,
        query: str,
        vector: bytes,
        reason: str,
        category: str,
        severity: int,
        metadata: dict[str, Any],
        now: float,
    ) -> int:
        async with self._write(durable=True) as w:
            cur = await w.execute(
                "INSERT INTO negatives (query, vector, reason, category, severity,"
                " false_positives, created_at, metadata) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (query, vector, reason, category, severity, now, dumps_metadata(metadata)),
            )
            new_id = cur.lastrowid
        if new_id is None:
            raise StoreError("the negative entry was not inserted")
        return int(new_id)

    async def negative_get(self, entry_id: int) -> NegativeEntry | None:
        rows = list(
            await self.reader.execute_fetchall(f"SELECT {_NEG_COLS} FROM negatives WHERE id = ?", (entry_id,))
        )
        return negative_from_row(rows[0]) if rows else None

    async def negative_list(self, category: str | None, limit: int | None) -> list[NegativeEntry]:
        where, params = ("WHERE category = ?", [category]) if category is not None else ("", [])
        rows = await self.reader.execute_fetchall(
            f"SELECT {_NEG_COLS} FROM negatives {where} ORDER BY id LIMIT ?",
            (*params, -1 if limit is None else limit),
        )
        return [negative_from_row(r) for r in rows]

    async def negative_remove(self, entry_id: int) -> bool:
        async with self._write(durable=True) as w:
            cur = await w.execute("DELETE FROM negatives WHERE id = ?", (entry_id,))
            return cur.rowcount > 0

    async def negative_report_false_positive(self, entry_id: int) -> int:
        async with self._write(durable=True) as w:
            await w.execute(
                "UPDATE negatives SET false_positives = false_positives + 1 WHERE id = ?",
                (entry_id,),
            )
            rows = list(
                await w.execute_fetchall("SELECT false_positives FROM negatives WHERE id = ?", (entry_id,))
            )
        return int(rows[0][0]) if rows else -1

    async def negative_count(self) -> int:
        return int(await self._one("SELECT count(*) FROM negatives"))

    # -- counters --------------------------------------------------------------------------

    async def load_counters(self) -> dict[str, float]:
        rows = await self.reader.execute_fetchall("SELECT name, value FROM counters")
        return {str(r[0]): float(r[1]) for r in rows}

    async def add_counters(self, deltas: dict[str, float]) -> None:
        if not deltas:
            return
        async with self._write() as w:
            await w.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                [(name, float(delta)) for name, delta in deltas.items()],
            )
