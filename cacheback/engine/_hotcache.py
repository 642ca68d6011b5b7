"""In-memory exact-hit map: answers repeated questions without embedding or I/O.

An entry is only served while the negative list and the store's deletions are at the
generation it was recorded under, so a blocklisted or deleted answer is never replayed
from memory.
"""

from __future__ import annotations

from collections import OrderedDict

from ._types import CacheEntry


class HotCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], tuple[CacheEntry, int]] = OrderedDict()
        self.generation = 0

    def bump(self) -> None:
        """Invalidate everything (a delete, a clear or a new negative entry happened)."""
        self.generation += 1
        self._items.clear()

    def get(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        key = (scope, query_hash)
        item = self._items.get(key)
        if item is None:
            return None
        entry, gen = item
        if gen != self.generation or entry.expires_at <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return entry

    def put(self, scope: str, query_hash: str, entry: CacheEntry, generation: int) -> None:
        if self._capacity <= 0 or generation != self.generation:
            return
        key = (scope, query_hash)
        self._items[key] = (entry, generation)
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def discard_ids(self, ids: set[int]) -> None:
        for key in [k for k, (e, _) in self._items.items() if e.id in ids]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)
