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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from cacheback._logging import get_logger

from ...core._errors import ConfigError, StoreError
from ._embedded_entries import EmbeddedEntries, EmbeddedMaintenance
from ._embedded_parts import EmbeddedBlocklist, EmbeddedChanges, EmbeddedCounters
from ._index_files import (
    DB_FILE,
    AnyIndex,
    IndexKind,
    add_blobs,
    looks_like_sqlite,
    move_db_aside,
    open_index,
    passes_quick_check,
    read_bundle,
    resolve_kind,
    sweep_tmp,
    write_bundle,
)
from ._scope_map import ScopeMap
from ._sqlite import MIN_KEEP_CHANGES, ChangeRow, Database, is_busy, is_corruption
from ._store_errors import StoreHealth, store_errors

if TYPE_CHECKING:
    from ...core._store_ports import Store

_RECENT_DELETIONS = 65_536  # ids kept so the engine can drop just those from memory

log = get_logger("cacheback.store")


_META_FORMAT = 1

_CATCH_UP_CHUNK = 10_000  # change rows read per query while catching up
_REBUILD_CHUNK = 5_000  # vectors read per query while rebuilding (bounds peak memory)
_SAVE_AFTER_REBUILD = 10_000  # persist a rebuilt index at once when it was this costly


_OPEN_BUSY_RETRIES = 5  # 0.1 s + 0.2 + 0.4 + 0.8 + 1.6 at most


class EmbeddedStore:
    """SQLite (WAL, aiosqlite) + an on-disk vector index; implements the ``Store`` port.

    This class owns the lifecycle and keeps the index in step with SQLite; the port's parts
    (``entries``, ``maintenance``, ``changes``, ``blocklist``, ``counters``) are small
    objects over it.

    ``path`` is the cache directory (created if missing). Several processes may share it.
    ``index``: "hnsw" (hnswlib), "numpy" (exact brute force) or "auto" (hnsw when installed).
    ``ef_search``: the HNSW search breadth; None adapts it to the index size (see
    ``auto_ef`` in ``_hnsw_index.py``).
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
        ef_search: int | None = None,
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
        self.deletions = 0  # deletions applied from the log (any process); see ChangeFeed
        self.recent_deletions: deque[int] = deque(maxlen=_RECENT_DELETIONS)
        self._dirty = False  # the index differs from what is saved on disk
        self._rebuilds = 0
        self._seen_dv: int | None = None
        self._sync_lock = anyio.Lock()  # one catch-up, rebuild or save at a time
        self.health = StoreHealth()
        self._entries = EmbeddedEntries(self)
        self._maintenance = EmbeddedMaintenance(self)
        self._changes = EmbeddedChanges(self)
        self._blocklist = EmbeddedBlocklist(self)
        self._counters = EmbeddedCounters(self)

    # -- the port's parts ------------------------------------------------------------------

    @property
    def entries(self) -> EmbeddedEntries:
        return self._entries

    @property
    def maintenance(self) -> EmbeddedMaintenance:
        return self._maintenance

    @property
    def changes(self) -> EmbeddedChanges:
        return self._changes

    @property
    def blocklist(self) -> EmbeddedBlocklist:
        return self._blocklist

    @property
    def counters(self) -> EmbeddedCounters:
        return self._counters

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_entries(self) -> int:
        return self._max_entries

    async def __aenter__(self) -> EmbeddedStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------

    @store_errors
    async def open(self) -> None:
        if self._db is not None:
            return
        await anyio.to_thread.run_sync(functools.partial(self._dir.mkdir, parents=True, exist_ok=True))
        await anyio.to_thread.run_sync(sweep_tmp, self._dir)
        if self.health.fault is not None and not await anyio.to_thread.run_sync(
            passes_quick_check, self._db_path
        ):
            # Reopening after a fault at run time: pages may be damaged where opening does
            # not look. The file is moved aside (kept for inspection) and a fresh one made.
            await self._quarantine_db(f"failed its integrity check after: {self.health.fault}")
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
            self.health.healed()
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
        self._seen_dv = None
        self._blocklist.forget()

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
            if self._rebuilds > rebuilds and len(self.require_index()) >= _SAVE_AFTER_REBUILD:
                await self._save()  # so a crash before close does not cost another rebuild

    @store_errors
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
                await db.prune_changes(max(MIN_KEEP_CHANGES, self._max_entries))
            except (sqlite3.Error, OSError, StoreError) as exc:
                # The database is the truth: a lost index save only costs a catch-up later.
                log.warning("store.close_incomplete", error=str(exc))
            finally:
                await db.close()
                self._db = None
                self._reset()

    def require_db(self) -> Database:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    def require_index(self) -> AnyIndex:
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
        index = self.require_index()
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
            self.recent_deletions.extend(dels)
            self._scopes.remove(dels)  # before the index: searches stop returning them first
            await anyio.to_thread.run_sync(index.remove, dels)

    async def _save(self) -> None:
        index = self.require_index()
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

    def exact_limit(self) -> int:
        """Scopes with at most this many vectors are scanned exactly instead of searched."""
        if self._exact_scan_limit is not None:
            return self._exact_scan_limit
        # A filtered HNSW search visits about ef/fraction nodes, so tiny scopes degrade to a
        # whole-graph walk; scanning a scope costs ~2 µs a row. They cross near sqrt(100·n).
        return max(256, math.isqrt(100 * len(self.require_index())))

    def allowed(self, scope: str, size: int) -> Any:
        """The index filter for ``scope`` (None: every indexed entry is in it)."""
        return None if size >= len(self.require_index()) else self._scopes.allowed(scope)

    async def refresh(self, seen_version: int | None = None) -> None:
        """Catch up on commits made by any other connection since the last look.
        ``seen_version``: the reader's ``data_version`` just read (no round trip for it)."""
        db = self.require_db()
        dv = await db.data_version() if seen_version is None else seen_version
        if dv == self._seen_dv and not self._sync_lock.locked():
            return
        # Marked as seen only once caught up: a caller arriving mid catch-up waits for it
        # instead of searching an index that does not have those commits yet.
        async with self._sync_lock:
            if dv == self._seen_dv:
                return
            await self._catch_up(db)
            self._seen_dv = dv

    def describe(self) -> dict[str, Any]:
        index = self._index
        return {
            "health": self.health.describe(),
            "backend": "embedded",
            "path": str(self._dir),
            "database": str(self._db_path),
            "index": self._kind,
            "index_size": len(index) if index is not None else 0,
            "dim": self._dim,
            "max_entries": self._max_entries,
            "ef_search": self._ef_search if self._ef_search is not None else "auto",
            "watermark": self._watermark,
            "open": self._db is not None,
        }


if TYPE_CHECKING:
    _conforms: type[Store] = EmbeddedStore  # mypy checks the class against the port
