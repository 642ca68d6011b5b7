"""The embedded store's entry parts: ``Entries`` (exact, search, the write path) and
``Maintenance`` (operator actions), over the SQLite file and the index ``EmbeddedStore`` keeps."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ...core._errors import StoreError
from ...core._store_ports import ExactQuery, SearchQuery
from ...core._types import CacheEntry, NewEntry, Vector
from ._numpy_index import as_unit_vector
from ._ranking import Ranking, rank_scopes, search_each
from ._sqlite import MIN_KEEP_CHANGES, EntryHits, EntryRow, dumps_metadata
from ._store_errors import StoreHealth, store_errors

if TYPE_CHECKING:
    from ...core._store_ports import Entries, Maintenance
    from ._embedded import EmbeddedStore

INLINE_ROWS = 512  # below this many vectors numpy scoring is cheaper than a thread hop


def vector_blob(vector: Vector, dim: int) -> bytes:
    """A vector as stored: unit length, float32 little-endian."""
    return as_unit_vector(vector, dim).astype("<f4").tobytes()


def _live(
    found: dict[int, CacheEntry], ranked: Sequence[tuple[int, float]], now: float
) -> list[tuple[CacheEntry, float]]:
    """The ranked ids that were read and are not expired at ``now``, with their entries."""
    out: list[tuple[CacheEntry, float]] = []
    for label, sim in ranked:
        entry = found.get(label)
        if entry is not None and entry.expires_at > now:
            out.append((entry, sim))
    return out


class EmbeddedEntries:
    """Cached answers in SQLite; semantic search through the index (or an exact scan)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._s = store

    @property
    def health(self) -> StoreHealth:
        return self._s.health

    @store_errors
    async def find_exact(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        """One key (not part of the ``Entries`` port, which checks a micro-batch at once)."""
        # Straight from SQLite: always current, no index involved.
        return await self._s.require_db().find_exact(scope, query_hash, now, self._s.dim)

    @store_errors
    async def find_exact_many(self, queries: Sequence[ExactQuery]) -> list[CacheEntry | None]:
        """:meth:`find_exact` for each query, in order, in one read."""
        return await self._s.require_db().find_exact_many(queries, self._s.dim)

    @store_errors
    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """Live entries of ``scope`` nearest to ``vector``, best first (never stale ones)."""
        return (await self._search_many([SearchQuery(scope, vector, now)], k))[0]

    @store_errors
    async def search_many(
        self, queries: Sequence[SearchQuery], k: int
    ) -> list[list[tuple[CacheEntry, float]]]:
        """:meth:`search` for each query, in order: one catch-up, one read of each small
        scope's vectors, one thread hop for the index and one read of the candidates for all
        of them (a query whose first candidates were deleted or expired reads again)."""
        return await self._search_many(queries, k)

    async def _search_many(
        self, queries: Sequence[SearchQuery], k: int
    ) -> list[list[tuple[CacheEntry, float]]]:
        results: list[list[tuple[CacheEntry, float]]] = [[] for _ in queries]
        if k <= 0 or not queries:
            return results
        dim = self._s.dim
        units = [as_unit_vector(q.vector, dim) for q in queries]
        limit = self._s.exact_limit()
        if all((self._s.scope_size(q.scope) or 0) <= limit for q in queries):
            # Small scopes only (as last seen): read from SQLite as it is now, with no catch-up
            # of the index needed first; one hand-over to the reader for the whole batch, and
            # the catch-up after it only when another connection committed since the last.
            direct = await self._scan_small(queries, units, k, limit)
            if direct is not None:
                return direct
        await self._s.refresh()
        sizes = [self._s.scope_size(q.scope) or 0 for q in queries]
        scanned: dict[str, list[int]] = {}  # small scope -> positions of its queries
        indexed: list[int] = []
        for i, (q, size) in enumerate(zip(queries, sizes, strict=True)):
            if size > limit:
                indexed.append(i)
            elif size > 0:
                scanned.setdefault(q.scope, []).append(i)
        # Rows live at the earliest query's time are read; each query then drops those
        # expired at its own time, as its own search would.
        earliest = min(q.now for q in queries)
        rankings = await self._rank_scanned(scanned, units, earliest)
        hits, fetches = await self._search_indexed(queries, indexed, units, sizes, k)
        # The first window of every query's ranking, and the first k of its index hits (the
        # index is asked for more than k, for hits no longer live), read in one go; a query
        # with fewer than k live ones there reads the rest of its hits. The index's hits
        # are each query's own (a scan's windows overlap within a scope, the index's rarely
        # do): every row read past k is a row decoded for nothing when all k are live.
        windows = {i: ranking.window(0, k + 8) for i, ranking in rankings.items()}
        first = {i: found_hits[:k] for i, found_hits in hits.items()}
        wanted = {label for window in (*windows.values(), *first.values()) for label, _ in window}
        db = self._s.require_db()
        found = await db.live_entries(sorted(wanted), earliest) if wanted else {}
        for i, window in windows.items():
            now = queries[i].now
            out = _live(found, window, now)
            if len(out) < k and len(rankings[i]) > k + 8:  # rows deleted since the scan
                out = await self._exact_rest(rankings[i], out, k, now)
            results[i] = out[:k]
        for i, found_hits in hits.items():
            now = queries[i].now
            out = _live(found, first[i], now)
            if len(out) < k and len(found_hits) > len(first[i]):
                rest = [label for label, _ in found_hits[len(first[i]) :]]
                found.update(await db.live_entries(rest, earliest))
                out = _live(found, found_hits, now)
            fetch, size = fetches[i], sizes[i]
            if len(out) < k and len(found_hits) >= fetch and fetch < size:
                out = await self._search_index(queries[i].scope, units[i], k, now, size, min(size, fetch * 4))
            results[i] = out[:k]
        return results

    async def _scan_small(
        self, queries: Sequence[SearchQuery], units: Sequence[Vector], k: int, limit: int
    ) -> list[list[tuple[CacheEntry, float]]] | None:
        """Every query's scope scanned exactly on the reader's thread; None when one has
        grown past a small scope meanwhile (another process wrote to it): then the index."""
        by_scope: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_scope.setdefault(q.scope, []).append(i)
        asked = {scope: [(units[i], queries[i].now) for i in at] for scope, at in by_scope.items()}
        version, found = await self._s.require_db().scan_scopes(asked, k, self._s.dim, 4 * limit)
        await self._s.refresh(version)
        if found is None:
            return None
        results: list[list[tuple[CacheEntry, float]]] = [[] for _ in queries]
        for scope, at in by_scope.items():
            for i, out in zip(at, found[scope], strict=True):
                results[i] = out
        return results

    async def _rank_scanned(
        self, scanned: dict[str, list[int]], units: Sequence[Vector], now: float
    ) -> dict[int, Ranking]:
        """Small scopes are scored exactly from SQLite: each scope's vectors read once for all
        of its queries."""
        if not scanned:
            return {}
        rows = await self._s.require_db().scopes_vectors(list(scanned), now)
        jobs = [(rows.get(scope, []), [units[i] for i in at]) for scope, at in scanned.items()]
        dim = self._s.dim
        work = sum(len(r) * len(q) for r, q in jobs)
        if work > INLINE_ROWS:
            ranked = await anyio.to_thread.run_sync(rank_scopes, jobs, dim)
        else:
            ranked = rank_scopes(jobs, dim)
        out: dict[int, Ranking] = {}
        for at, rankings in zip(scanned.values(), ranked, strict=True):
            out.update(zip(at, rankings, strict=True))
        return out

    async def _search_indexed(
        self,
        queries: Sequence[SearchQuery],
        indexed: Sequence[int],
        units: Sequence[Vector],
        sizes: Sequence[int],
        k: int,
    ) -> tuple[dict[int, list[tuple[int, float]]], dict[int, int]]:
        """Large scopes go through the index: all of them in one thread hop."""
        if not indexed:
            return {}, {}
        index = self._s.require_index()
        fetches = {i: min(sizes[i], max(2 * k, k + 16)) for i in indexed}
        requests = [(units[i], fetches[i], self._s.allowed(queries[i].scope, sizes[i])) for i in indexed]
        found = await anyio.to_thread.run_sync(search_each, index, requests)
        return dict(zip(indexed, found, strict=True)), fetches

    async def _exact_rest(
        self, ranking: Ranking, out: list[tuple[CacheEntry, float]], k: int, now: float
    ) -> list[tuple[CacheEntry, float]]:
        # Rows deleted since the scan are skipped: read further down the ranking for them.
        return await self._s.require_db().read_further(ranking, out, k, now)

    async def _search_index(
        self, scope: str, query: Vector, k: int, now: float, size: int, fetch: int
    ) -> list[tuple[CacheEntry, float]]:
        db = self._s.require_db()
        index = self._s.require_index()
        allowed = self._s.allowed(scope, size)
        while True:
            hits = await anyio.to_thread.run_sync(index.search, query, fetch, allowed)
            found = await db.live_entries([i for i, _ in hits], now)
            out = [(found[i], sim) for i, sim in hits if i in found]
            # Expired or concurrently deleted hits are dropped; over-fetch until k live ones
            # are in hand or the scope is exhausted, so they never hide a live entry.
            if len(out) >= k or len(hits) < fetch or fetch >= size:
                return out[:k]
            fetch = min(size, fetch * 4)

    @store_errors
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
        ids = await self._s.require_db().put(rows, self._s.max_entries)
        # Caught up at once: LRU evictions reach the change feed (and the engine's memory)
        # before the next lookup, and the new vectors are in the index.
        await self._s.refresh()
        return [ids[slot[(e.scope, e.query_hash)]] for e in entries]

    def _entry_row(self, entry: NewEntry) -> EntryRow:
        blob = vector_blob(entry.vector, self._s.dim) if entry.vector is not None else None
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

    @store_errors
    async def attach_vectors(self, ids: Sequence[int], vectors: Vector) -> None:
        if len(ids) != len(vectors):
            raise StoreError(f"{len(ids)} ids but {len(vectors)} vectors")
        if not ids:
            return
        dim = self._s.dim
        pairs = [(vector_blob(v, dim), int(i)) for i, v in zip(ids, vectors, strict=True)]
        await self._s.require_db().attach_vectors(pairs)
        await self._s.refresh()  # the update trigger logged them: index them now

    @store_errors
    async def unindexed(self, limit: int) -> list[CacheEntry]:
        return await self._s.require_db().unindexed(limit, time.time())

    @store_errors
    async def touch(self, ids: Sequence[int], now: float) -> None:
        if ids:
            await self._s.require_db().touch(ids, now)

    @store_errors
    async def get(self, entry_id: int) -> CacheEntry | None:
        """The entry with this id, expired or not (None once deleted)."""
        return await self._s.require_db().get(entry_id)

    @store_errors
    async def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        removed = await self._s.require_db().delete([int(i) for i in ids])
        await self._s.refresh()
        return removed

    def scope_size(self, scope: str) -> int | None:
        return self._s.scope_size(scope)


class EmbeddedMaintenance:
    """Operator actions over all entries."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._s = store

    @property
    def health(self) -> StoreHealth:
        return self._s.health

    @store_errors
    async def evict_expired(self, now: float) -> int:
        db = self._s.require_db()
        removed = await db.evict_expired(now)
        await self._s.refresh()
        # The background sweep is also the moment to trim the changes log.
        await db.prune_changes(max(MIN_KEEP_CHANGES, self._s.max_entries))
        return removed

    @store_errors
    async def clear(self, scope_prefix: str | None = None) -> int:
        removed = await self._s.require_db().clear(scope_prefix)
        await self._s.refresh()
        return removed

    @store_errors
    async def count(self) -> int:
        return await self._s.require_db().count()

    @store_errors
    async def top_by_hits(self, limit: int = 10) -> list[EntryHits]:
        """The most hit entries, most first (one scan of the table: for an operator's view)."""
        return await self._s.require_db().top_entries(limit)

    @store_errors
    async def list(self, limit: int = 100, offset: int = 0, *, before: int | None = None) -> list[CacheEntry]:
        """Stored entries, newest first, expired ones included (for inspection); ``before``:
        ids below it only (keyset paging)."""
        return await self._s.require_db().entries(limit, offset, before)

    @store_errors
    async def set_hit_threshold(self, entry_id: int, threshold: float | None) -> bool:
        return await self._s.require_db().set_hit_threshold(int(entry_id), threshold)


if TYPE_CHECKING:
    _entries: type[Entries] = EmbeddedEntries  # mypy checks the parts against the ports
    _maintenance: type[Maintenance] = EmbeddedMaintenance
