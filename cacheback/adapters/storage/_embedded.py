"""The embedded default store: one SQLite file (the truth) plus a vector index on disk beside it.

Layout of the cache directory::

    cache.db (+ -wal, -shm)    entries, negatives, counters, the changes log
    index.hnsw, index.hnsw.labels.npy  or  index.npz
    index.meta.json            kind, dim, count, watermark (last changes seq in the index),
                               database id, size and CRC-32 of every index file
    index.lock                 advisory lock taken while index files are replaced or read

On open the index is loaded if its metadata matches, then caught up by replaying the changes
log past its watermark (vectors come from SQLite, never from the embedder); it is rebuilt from
SQLite only when missing, unreadable, for another dimension or database, or too far behind.
Before every semantic search the store checks ``PRAGMA data_version`` and replays whatever
other connections (other processes sharing the directory included) have committed.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from cacheback._logging import get_logger

from ...core._errors import ConfigError, StoreCorrupt, StoreError
from ...core._types import CacheEntry, NegativeEntry, NewEntry, Vector
from ._index_files import (
    DB_FILE,
    AnyIndex,
    IndexKind,
    add_blobs,
    looks_like_sqlite,
    matrix,
    move_db_aside,
    open_index,
    rank_blobs,
    read_bundle,
    resolve_kind,
    sweep_tmp,
    write_bundle,
)
from ._numpy_index import as_unit_vector
from ._scope_map import ScopeMap
from ._sqlite import ChangeRow, Database, EntryRow, dumps_metadata, is_busy, is_corruption

if TYPE_CHECKING:
    from ...core._ports import Store

_RECENT_DELETIONS = 65_536  # ids kept so the engine can drop just those from memory

log = get_logger("cacheback.store")


_META_FORMAT = 1

_CATCH_UP_CHUNK = 10_000  # change rows read per query while catching up
_REBUILD_CHUNK = 5_000  # vectors read per query while rebuilding (bounds peak memory)
_SAVE_AFTER_REBUILD = 10_000  # persist a rebuilt index at once when it was this costly
_INLINE_ROWS = 512  # below this many vectors numpy scoring is cheaper than a thread hop
_MIN_KEEP_CHANGES = 10_000

P = ParamSpec("P")
R = TypeVar("R")


# -- the store -------------------------------------------------------------------------------


def _store_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Map SQLite and file-system failures to StoreError at the adapter boundary."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except sqlite3.Error as exc:
            kind = StoreCorrupt if is_corruption(exc) else StoreError
            raise kind(f"{fn.__name__}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{fn.__name__}: {exc}") from exc

    return wrapper


_OPEN_BUSY_RETRIES = 5  # 0.1 s + 0.2 + 0.4 + 0.8 + 1.6 at most


class EmbeddedStore:
    """SQLite (WAL, aiosqlite) + an on-disk vector index; implements the ``Store`` port.

    ``path`` is the cache directory (created if missing). Several processes may share it.
    ``index``: "hnsw" (hnswlib), "numpy" (exact brute force) or "auto" (hnsw when installed).
    ``exact_scan_limit``: scopes with at most this many vectors are scored exactly from SQLite
    instead of through the index; None adapts it to the index size.
    """

    def __init__(
        self,
        path: Path | str,
        dim: int,
        *,
        max_entries: int = 100_000,
        index: IndexKind = "auto",
        ef_search: int = 64,
        exact_scan_limit: int | None = None,
    ) -> None:
        if dim < 1:
            raise ConfigError("dim must be at least 1")
        if max_entries < 1:
            raise ConfigError("max_entries must be at least 1")
        self._dir = Path(path).expanduser()
        self._db_path = self._dir / DB_FILE
        self._dim = dim
        self._max_entries = max_entries
        self._kind = resolve_kind(index)
        self._ef_search = ef_search
        self._exact_scan_limit = exact_scan_limit
        self._db: Database | None = None
        self._index: AnyIndex | None = None
        self._scopes = ScopeMap()
        self._db_id = ""
        self._watermark = 0  # last changes seq applied to the index
        self.deletions = 0  # deletions applied from the log (any process); see Store.deletions
        self._recent_dels: deque[int] = deque(maxlen=_RECENT_DELETIONS)
        self._dirty = False  # the index differs from what is saved on disk
        self._rebuilds = 0
        self._seen_dv: int | None = None
        self._sync_lock = anyio.Lock()  # one catch-up, rebuild or save at a time
        self._neg_lock = anyio.Lock()
        self._neg_seen_dv: int | None = None
        self._neg_version = -1
        self._neg_entries: list[NegativeEntry] = []
        self._neg_vecs: Vector = np.empty((0, dim), dtype=np.float32)

    async def __aenter__(self) -> EmbeddedStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------

    @_store_errors
    async def open(self) -> None:
        if self._db is not None:
            return
        await anyio.to_thread.run_sync(functools.partial(self._dir.mkdir, parents=True, exist_ok=True))
        await anyio.to_thread.run_sync(sweep_tmp, self._dir)
        attempt, busy = 1, 0
        while True:
            if not await anyio.to_thread.run_sync(looks_like_sqlite, self._db_path):
                await self._quarantine_db("not an SQLite database")
            db = Database(self._db_path)
            try:
                await db.open()
                await self._start(db)
            except sqlite3.DatabaseError as exc:
                await db.close()
                self._reset()
                if is_busy(exc) and busy < _OPEN_BUSY_RETRIES:
                    # Several processes opening at once (proxy workers, a fork pool): some
                    # of SQLite's WAL set-up answers "locked" without waiting; try again.
                    busy += 1
                    await anyio.sleep(0.05 * 2**busy)
                    continue
                if attempt == 2 or not is_corruption(exc):
                    raise
                attempt += 1
                await self._quarantine_db(str(exc))
                continue
            except BaseException:
                await db.close()
                self._reset()
                raise
            self._db = db
            return

    async def _quarantine_db(self, reason: str) -> None:
        moved = await anyio.to_thread.run_sync(move_db_aside, self._db_path)
        log.warning(
            "store.database_corrupt",
            path=str(self._db_path),
            moved_to=[str(p) for p in moved],
            error=reason,
        )

    def _reset(self) -> None:
        self._index = None
        self._scopes = ScopeMap()
        self._watermark = 0
        self._dirty = False
        self._seen_dv = self._neg_seen_dv = None
        self._neg_version = -1

    async def _start(self, db: Database) -> None:
        recorded = await db.claim_dim(self._dim)
        if recorded != self._dim:
            raise ConfigError(
                f"{self._db_path} holds {recorded}-dimensional vectors but this embedder "
                f"makes {self._dim}; use another cache_dir for it"
            )
        self._db_id = str(await db.meta("db_id"))
        self._seen_dv = await db.data_version()
        index, watermark, status = await anyio.to_thread.run_sync(
            read_bundle, self._dir, self._kind, self._dim, self._db_id, self._ef_search
        )
        async with self._sync_lock:
            rebuilds = self._rebuilds
            if index is None:
                log.info("store.index_rebuild", reason=status, directory=str(self._dir))
                await self._rebuild(db)
            else:
                self._index = index
                self._watermark = watermark
                self._scopes.load(await db.scope_rows())
                await self._catch_up(db)
                if len(self._index) != len(self._scopes):
                    log.warning(
                        "store.index_mismatch",
                        index=len(self._index),
                        database=len(self._scopes),
                    )
                    await self._rebuild(db)
            if self._rebuilds > rebuilds and len(self._require_index()) >= _SAVE_AFTER_REBUILD:
                await self._save()  # so a crash before close does not cost another rebuild

    @_store_errors
    async def close(self) -> None:
        db = self._db
        if db is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                async with self._sync_lock:
                    # Too far behind to replay: not worth a rebuild at exit, and whatever the
                    # directory holds is no older than this index anyway.
                    if await self._catch_up(db, allow_rebuild=False) and self._dirty:
                        await self._save()
                await db.prune_changes(max(_MIN_KEEP_CHANGES, self._max_entries))
            except (sqlite3.Error, OSError, StoreError) as exc:
                # The database is the truth: a lost index save only costs a catch-up later.
                log.warning("store.close_incomplete", error=str(exc))
            finally:
                await db.close()
                self._db = None
                self._reset()

    def _require_db(self) -> Database:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    def _require_index(self) -> AnyIndex:
        if self._index is None:
            raise StoreError("the store is not open")
        return self._index

    # -- index maintenance (callers hold _sync_lock) ---------------------------------------

    async def _rebuild(self, db: Database) -> None:
        """Build a fresh index from the vectors in one SQLite snapshot."""
        started = time.perf_counter()
        snap = await db.snapshot()
        try:
            seq, total = await Database.snapshot_head(snap)
            # A little headroom only: hnswlib touches what it allocates, and growth resizes.
            capacity = total + max(1024, total // 16)
            index = open_index(self._kind, self._dim, capacity=capacity, ef_search=self._ef_search)
            pairs: list[tuple[int, str]] = []
            nbytes = self._dim * 4
            after = 0
            while rows := await Database.snapshot_vectors(snap, after, _REBUILD_CHUNK):
                after = rows[-1][0]
                good = [r for r in rows if len(r[2]) == nbytes]
                if len(good) != len(rows):
                    log.warning("store.bad_vectors_skipped", count=len(rows) - len(good))
                if good:
                    ids = [r[0] for r in good]
                    await anyio.to_thread.run_sync(add_blobs, index, ids, [r[2] for r in good], self._dim)
                    pairs.extend((r[0], r[1]) for r in good)
        finally:
            with anyio.CancelScope(shield=True):
                await snap.close()
        self._index = index
        self._scopes.load(pairs)
        self._watermark = seq
        self._dirty = True
        self._rebuilds += 1
        log.info(
            "store.index_rebuilt",
            kind=self._kind,
            entries=len(index),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _catch_up(self, db: Database, *, allow_rebuild: bool = True) -> bool:
        """Replay the changes log past the watermark into the index and the scope map.

        Returns False if the log no longer reaches back to the watermark and a rebuild was
        not allowed (the index is then left as it was).
        """
        while True:
            rows = await db.changes_since(self._watermark, _CATCH_UP_CHUNK)
            if not rows:
                return True
            if rows[0][0] != self._watermark + 1:
                pruned = int(await db.meta("pruned_through") or 0)
                if pruned > self._watermark:  # trimmed past us: replay is impossible
                    if not allow_rebuild:
                        return False
                    log.info("store.index_behind_log", watermark=self._watermark, pruned=pruned)
                    await self._rebuild(db)
                    continue
            await self._apply(rows)
            self._watermark = rows[-1][0]
            self._dirty = True
            if len(rows) < _CATCH_UP_CHUNK:
                return True

    async def _apply(self, rows: Sequence[ChangeRow]) -> None:
        index = self._require_index()
        nbytes = self._dim * 4
        add_ids: list[int] = []
        add_scopes: list[str] = []
        blobs: list[bytes] = []
        dels: list[int] = []
        for _seq, op, entry_id, scope, vector in rows:
            if op == "del":
                dels.append(entry_id)
            elif vector is not None and scope is not None and len(vector) == nbytes:
                # ("add" rows with no vector: exact-only entries, or already deleted again)
                add_ids.append(entry_id)
                add_scopes.append(scope)
                blobs.append(vector)
        if add_ids:
            await anyio.to_thread.run_sync(add_blobs, index, add_ids, blobs, self._dim)
            self._scopes.add(add_ids, add_scopes)  # after the index: filters never see a gap
        if dels:
            self.deletions += len(dels)
            self._recent_dels.extend(dels)
            self._scopes.remove(dels)  # before the index: searches stop returning them first
            await anyio.to_thread.run_sync(index.remove, dels)

    async def _save(self) -> None:
        index = self._require_index()
        meta = {
            "format": _META_FORMAT,
            "kind": self._kind,
            "dim": self._dim,
            "count": len(index),
            "watermark": self._watermark,
            "db_id": self._db_id,
            "saved_at": time.time(),
        }
        written = await anyio.to_thread.run_sync(write_bundle, self._dir, index, meta)
        self._dirty = False
        log.debug("store.index_saved", written=written, watermark=self._watermark)

    def scope_size(self, scope: str) -> int | None:
        return self._scopes.size(scope) if self._index is not None else None

    def deleted_since(self, count: int) -> list[int] | None:
        """Ids deleted after the ``count``-th deletion, or None if that is too long ago."""
        missed = self.deletions - count
        if missed <= 0:
            return []
        if missed > len(self._recent_dels):
            return None
        return list(self._recent_dels)[-missed:]

    @_store_errors
    async def sync(self) -> None:
        """Catch up on other processes' writes now (the engine calls this periodically)."""
        await self._refresh()

    async def _refresh(self) -> None:
        """Catch up on commits made by any other connection since the last look."""
        db = self._require_db()
        dv = await db.data_version()
        if dv == self._seen_dv and not self._sync_lock.locked():
            return
        # Marked as seen only once caught up: a caller arriving mid catch-up waits for it
        # instead of searching an index that does not have those commits yet.
        async with self._sync_lock:
            if dv == self._seen_dv:
                return
            await self._catch_up(db)
            self._seen_dv = dv

    # -- entries ---------------------------------------------------------------------------

    @_store_errors
    async def find_exact(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        # Straight from SQLite: always current, no index involved.
        return await self._require_db().find_exact(scope, query_hash, now)

    @_store_errors
    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """Live entries of ``scope`` nearest to ``vector``, best first (never stale ones)."""
        if k <= 0:
            return []
        await self._refresh()
        query = as_unit_vector(vector, self._dim)
        size = self._scopes.size(scope)
        if size == 0:
            return []
        if size <= self._exact_limit():
            return await self._search_exact(scope, query, k, now)
        return await self._search_index(scope, query, k, now, size)

    def _exact_limit(self) -> int:
        if self._exact_scan_limit is not None:
            return self._exact_scan_limit
        # A filtered HNSW search visits about ef/fraction nodes, so tiny scopes degrade to a
        # whole-graph walk; scanning a scope costs ~2 µs a row. They cross near sqrt(100·n).
        return max(256, math.isqrt(100 * len(self._require_index())))

    async def _search_exact(
        self, scope: str, query: Vector, k: int, now: float
    ) -> list[tuple[CacheEntry, float]]:
        db = self._require_db()
        rows = await db.scope_vectors(scope, now)
        if len(rows) > _INLINE_ROWS:
            ranked = await anyio.to_thread.run_sync(rank_blobs, rows, query, self._dim)
        else:
            ranked = rank_blobs(rows, query, self._dim)
        out: list[tuple[CacheEntry, float]] = []
        start, step = 0, k + 8
        # Rows deleted since the scan are skipped; read further down the ranking for them.
        while len(out) < k and start < len(ranked):
            window = ranked[start : start + step]
            found = await db.live_entries([i for i, _ in window], now)
            out.extend((found[i], sim) for i, sim in window if i in found)
            start += step
            step *= 4
        return out[:k]

    async def _search_index(
        self, scope: str, query: Vector, k: int, now: float, size: int
    ) -> list[tuple[CacheEntry, float]]:
        db = self._require_db()
        index = self._require_index()
        allowed = None if size >= len(index) else self._scopes.allowed(scope)
        fetch = min(size, max(2 * k, k + 16))
        while True:
            hits = await anyio.to_thread.run_sync(index.search, query, fetch, allowed)
            found = await db.live_entries([i for i, _ in hits], now)
            out = [(found[i], sim) for i, sim in hits if i in found]
            # Expired or concurrently deleted hits are dropped; over-fetch until k live ones
            # are in hand or the scope is exhausted, so they never hide a live entry.
            if len(out) >= k or len(hits) < fetch or fetch >= size:
                return out[:k]
            fetch = min(size, fetch * 4)

    @_store_errors
    async def put(self, entries: Sequence[NewEntry]) -> list[int]:
        """Insert or replace (same scope and hash) and return the ids; evicts LRU past the cap."""
        if not entries:
            return []
        slot: dict[tuple[str, str], int] = {}
        rows: list[EntryRow] = []
        for entry in entries:
            key = (entry.scope, entry.query_hash)
            row = self._entry_row(entry)
            if key in slot:  # the same question twice in one batch: the later one wins
                rows[slot[key]] = row
            else:
                slot[key] = len(rows)
                rows.append(row)
        ids = await self._require_db().put(rows, self._max_entries)
        await self._refresh()
        return [ids[slot[(e.scope, e.query_hash)]] for e in entries]

    def _entry_row(self, entry: NewEntry) -> EntryRow:
        blob = None
        if entry.vector is not None:
            blob = as_unit_vector(entry.vector, self._dim).astype("<f4").tobytes()
        return (
            entry.scope,
            entry.query_hash,
            float(entry.created_at),
            float(entry.expires_at),
            float(entry.created_at),
            blob,
            entry.query,
            entry.answer,
            entry.payload,
            dumps_metadata(entry.metadata),
        )

    @_store_errors
    async def touch(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._require_db().touch(ids, now)

    @_store_errors
    async def get(self, entry_id: int) -> CacheEntry | None:
        """The entry with this id, expired or not (None once deleted)."""
        return await self._require_db().get(entry_id)

    @_store_errors
    async def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        removed = await self._require_db().delete([int(i) for i in ids])
        await self._refresh()
        return removed

    @_store_errors
    async def evict_expired(self, now: float) -> int:
        db = self._require_db()
        removed = await db.evict_expired(now)
        await self._refresh()
        # The background sweep is also the moment to trim the changes log.
        await db.prune_changes(max(_MIN_KEEP_CHANGES, self._max_entries))
        return removed

    @_store_errors
    async def clear(self, scope_prefix: str | None = None) -> int:
        removed = await self._require_db().clear(scope_prefix)
        await self._refresh()
        return removed

    @_store_errors
    async def count(self) -> int:
        return await self._require_db().count()

    @_store_errors
    async def entries(self, limit: int = 100, offset: int = 0) -> list[CacheEntry]:
        """Stored entries, newest first, expired ones included (for inspection)."""
        return await self._require_db().entries(limit, offset)

    # -- negative list ---------------------------------------------------------------------

    @_store_errors
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
        blob = as_unit_vector(vector, self._dim).astype("<f4").tobytes()
        new_id = await self._require_db().negative_add(
            query, blob, reason, category, int(severity), metadata, now
        )
        self._neg_version = -1
        return new_id

    @_store_errors
    async def negative_search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]:
        await self._refresh_negatives()
        entries, vecs = self._neg_entries, self._neg_vecs
        if not entries or k <= 0:
            return []
        query = as_unit_vector(vector, self._dim)
        if len(entries) > _INLINE_ROWS:
            sims = await anyio.to_thread.run_sync(np.matmul, vecs, query)
        else:  # a small matrix: cheaper than the thread hop
            sims = vecs @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return [(entries[i], float(sims[i])) for i in order.tolist()]

    async def _refresh_negatives(self) -> None:
        db = self._require_db()
        dv = await db.data_version()
        if dv == self._neg_seen_dv and self._neg_version >= 0 and not self._neg_lock.locked():
            return
        async with self._neg_lock:
            version = await db.negatives_version()
            if version == self._neg_version:
                self._neg_seen_dv = dv
                return
            rows = await db.negatives_all()
            nbytes = self._dim * 4
            good = [r for r in rows if len(r[1]) == nbytes]
            self._neg_entries = [r[0] for r in good]
            self._neg_vecs = (
                matrix([r[1] for r in good], self._dim)
                if good
                else np.empty((0, self._dim), dtype=np.float32)
            )
            self._neg_version = version
            self._neg_seen_dv = dv  # only now: a caller arriving meanwhile waited for this

    @_store_errors
    async def negative_get(self, entry_id: int) -> NegativeEntry | None:
        return await self._require_db().negative_get(entry_id)

    @_store_errors
    async def negative_list(
        self, category: str | None = None, limit: int | None = None
    ) -> list[NegativeEntry]:
        return await self._require_db().negative_list(category, limit)

    @_store_errors
    async def negative_remove(self, entry_id: int) -> bool:
        removed = await self._require_db().negative_remove(entry_id)
        self._neg_version = -1
        return removed

    @_store_errors
    async def negative_report_false_positive(self, entry_id: int) -> int:
        """Increment and return the report count (-1 if the entry does not exist)."""
        count = await self._require_db().negative_report_false_positive(entry_id)
        self._neg_version = -1
        return count

    @_store_errors
    async def negative_count(self) -> int:
        return await self._require_db().negative_count()

    # -- counters and description ----------------------------------------------------------

    @_store_errors
    async def load_counters(self) -> dict[str, float]:
        return await self._require_db().load_counters()

    @_store_errors
    async def add_counters(self, deltas: dict[str, float]) -> None:
        await self._require_db().add_counters(deltas)

    def describe(self) -> dict[str, Any]:
        index = self._index
        return {
            "backend": "embedded",
            "path": str(self._dir),
            "database": str(self._db_path),
            "index": self._kind,
            "index_size": len(index) if index is not None else 0,
            "dim": self._dim,
            "max_entries": self._max_entries,
            "ef_search": self._ef_search,
            "watermark": self._watermark,
            "open": self._db is not None,
        }


if TYPE_CHECKING:
    _conforms: type[Store] = EmbeddedStore  # mypy checks the class against the port
