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
        self._keys: dict[int, tuple[str, str]] = {}  # entry id -> key, to drop deleted ids
        self.generation = 0

    def bump(self) -> None:
        """Invalidate everything (a delete, a clear or a new negative entry happened)."""
        self.generation += 1
        self._items.clear()
        self._keys.clear()

    def get(self, scope: str, query_hash: str, now: float) -> CacheEntry | None:
        key = (scope, query_hash)
        item = self._items.get(key)
        if item is None:
            return None
        entry, gen = item
        if gen != self.generation or entry.expires_at <= now:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry

    def put(self, scope: str, query_hash: str, entry: CacheEntry, generation: int) -> None:
        if self._capacity <= 0 or generation != self.generation:
            return
        key = (scope, query_hash)
        self._drop(key)
        self._items[key] = (entry, generation)
        if entry.id > 0:
            self._keys[entry.id] = key
        while len(self._items) > self._capacity:
            self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[str, str]) -> None:
        item = self._items.pop(key, None)
        if item is not None and self._keys.get(item[0].id) == key:
            del self._keys[item[0].id]

    def discard_ids(self, ids: set[int]) -> None:
        for entry_id in ids:
            key = self._keys.get(entry_id)
            if key is not None:
                self._drop(key)

    def __len__(self) -> int:
        return len(self._items)
