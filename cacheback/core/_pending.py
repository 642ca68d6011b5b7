"""Answers on their way into the store, searchable before they are indexed (read-your-writes).

An answer is handed to the persister when it is returned. Until its row is committed it has
no id; until its vector is in the store's index a semantic search does not find it there.
Meanwhile it sits here: the exact tier finds it through the hot cache, and vector search
scans the few pending entries of its scope next to the store's results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import numpy as np

from ._types import CacheEntry, NewEntry, Vector

#: How long a lookup waits for a pending entry's row or vector (normally a few milliseconds;
#: a store that hangs must not hold a request for longer than this).
WAIT_S = 1.0


@dataclass(eq=False, slots=True)
class PendingEntry:
    entry: NewEntry
    entry_id: int = 0  # set once the row is committed
    vector: Vector | None = None
    written: anyio.Event = field(default_factory=anyio.Event)  # the write is over (either way)
    embedded: anyio.Event = field(default_factory=anyio.Event)  # the vector is known (or never)

    def __post_init__(self) -> None:
        self.vector = self.entry.vector
        if self.vector is not None:
            self.embedded.set()

    def cache_entry(self) -> CacheEntry:
        """The entry as a read serves it (id 0 until its row is committed)."""
        e = self.entry
        return CacheEntry(
            self.entry_id,
            e.scope,
            e.query,
            e.answer,
            e.payload,
            e.created_at,
            e.expires_at,
            e.created_at,
            0,
            e.metadata,
            vector=self.vector,
        )

    async def stored(self) -> CacheEntry | None:
        """The entry once its row is committed, or None if the write failed or hangs."""
        with anyio.move_on_after(WAIT_S):
            await self.written.wait()
        return self.cache_entry() if self.entry_id > 0 else None


class PendingEntries:
    """The pending answers of this process, by scope."""

    def __init__(self) -> None:
        self._by_scope: dict[str, list[PendingEntry]] = {}

    def add(self, entry: NewEntry) -> PendingEntry:
        p = PendingEntry(entry)
        self._by_scope.setdefault(entry.scope, []).append(p)
        return p

    def size(self, scope: str) -> int:
        return len(self._by_scope.get(scope, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_scope.values())

    def ids(self) -> set[int]:
        return {p.entry_id for ps in self._by_scope.values() for p in ps if p.entry_id > 0}

    def written(self, p: PendingEntry, entry_id: int) -> None:
        p.entry_id = entry_id
        p.written.set()

    def embedded(self, p: PendingEntry, vector: Vector | None) -> None:
        p.vector = vector
        p.embedded.set()

    def done(self, items: Iterable[PendingEntry]) -> None:
        """Indexed by the store (or given up): no longer searched here. Waiters are released."""
        for p in items:
            p.written.set()
            p.embedded.set()
            group = self._by_scope.get(p.entry.scope)
            if group is None:
                continue
            try:
                group.remove(p)
            except ValueError:
                continue
            if not group:
                del self._by_scope[p.entry.scope]

    def discard_ids(self, ids: set[int]) -> None:
        """Entries deleted before they were indexed."""
        self.done([p for ps in self._by_scope.values() for p in ps if p.entry_id in ids])

    def clear(self) -> None:
        self.done([p for ps in self._by_scope.values() for p in ps])

    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """The pending entries of ``scope`` nearest to ``vector`` (cosine), best first.

        Waits (briefly) for the vectors still being computed and for the rows of the matches
        to be committed, so every result has its real id."""
        group = [p for p in self._by_scope.get(scope, ()) if p.entry.expires_at > now]
        if not group or k <= 0:
            return []
        with anyio.move_on_after(WAIT_S):
            for p in group:
                await p.embedded.wait()
        scored = [p for p in group if p.vector is not None]
        if not scored:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        q = q / (float(np.linalg.norm(q)) or 1.0)
        mat = np.stack([np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in scored])
        norms = np.linalg.norm(mat, axis=1)
        sims = (mat @ q) / np.where(norms > 0, norms, 1.0)
        order = np.argsort(-sims, kind="stable")[:k].tolist()
        out: list[tuple[CacheEntry, float]] = []
        for i in order:
            entry = await scored[i].stored()
            if entry is not None:
                out.append((entry, float(sims[i])))
        return out


def merge(
    stored: list[tuple[CacheEntry, float]], pending: list[tuple[CacheEntry, float]], k: int
) -> list[tuple[CacheEntry, float]]:
    """The store's and the pending set's results as one best-first list, each entry once."""
    if not pending:
        return stored
    seen: dict[int, tuple[CacheEntry, float]] = {}
    for entry, sim in [*stored, *pending]:
        if entry.id not in seen or seen[entry.id][1] < sim:
            seen[entry.id] = (entry, sim)
    return sorted(seen.values(), key=lambda pair: -pair[1])[:k]
