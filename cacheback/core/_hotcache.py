"""In-memory hit map: answers repeated questions without embedding or I/O.

It remembers decisions, not just entries: under the hash of a question it keeps the entry
that answered it and how it matched (an exact entry of that very text, or a verbatim hit
on a paraphrase with its similarity), so a repeat is reported as what it is.

A decision is only served while the negative list and the store's deletions are at the
generation it was recorded under, so a blocklisted or deleted answer is never replayed
from memory.

The engine's loop writes it; a sync client's caller reads it on its own thread (a repeat
answered without a hop to the loop), so every operation holds a lock (uncontended: a few
hundred nanoseconds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ._pending import PendingEntry
from ._types import CacheEntry, LookupRequest, Tier

_Key = tuple[str, str]  # (scope, query hash)


@dataclass(frozen=True, slots=True)
class Remembered:
    """A remembered decision: the entry, and how it matched the question it is kept under."""

    entry: CacheEntry
    tier: Tier = Tier.EXACT
    similarity: float = 1.0
    guard_reasons: tuple[str, ...] = ()
    # An answer whose row is not committed yet (its entry has id 0): a hit waits for the
    # write, so it reports the real entry id.
    pending: PendingEntry | None = None

    def serves(self, request: LookupRequest) -> bool:
        """A remembered paraphrase hit serves only requests that accept paraphrase hits
        (``semantic``); an exact one serves any request that reads the cache."""
        return self.tier is Tier.EXACT or request.semantic


class HotCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # Only decisions of the current generation are kept (``bump`` clears the map and
        # ``put`` refuses older ones), so none is stored with its generation. The values
        # are the Remembered themselves: at 50k items every extra object per item is 50k
        # more that each full garbage collection walks.
        self._items: OrderedDict[_Key, Remembered] = OrderedDict()
        # entry id -> its key, or its keys when one entry answers several questions (its
        # own text and the paraphrases it was a verbatim hit for): a set only then, since
        # a key tuple of strings is not tracked by the collector and a set always is.
        self._keys: dict[int, _Key | set[_Key]] = {}
        self.generation = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        """Invalidate everything (a delete, a clear or a new negative entry happened)."""
        with self._lock:
            self.generation += 1
            self._items.clear()
            self._keys.clear()

    def get(self, scope: str, query_hash: str, now: float) -> Remembered | None:
        key = (scope, query_hash)
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if hit.entry.expires_at <= now:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return hit

    def put(
        self,
        scope: str,
        query_hash: str,
        entry: CacheEntry,
        generation: int,
        *,
        tier: Tier = Tier.EXACT,
        similarity: float = 1.0,
        guard_reasons: tuple[str, ...] = (),
        pending: PendingEntry | None = None,
    ) -> None:
        """Remember that ``entry`` answers the question hashed ``query_hash``, matched as
        ``tier`` (exact: that very text; verbatim: a paraphrase, at ``similarity``)."""
        remembered = Remembered(entry, tier, similarity, guard_reasons, pending)
        key = (scope, query_hash)
        with self._lock:
            if self._capacity <= 0 or generation != self.generation:
                return
            self._drop(key)
            self._items[key] = remembered
            if entry.id > 0:
                known = self._keys.get(entry.id)
                if known is None or known == key:
                    self._keys[entry.id] = key
                elif isinstance(known, set):
                    known.add(key)
                else:
                    self._keys[entry.id] = {known, key}
            while len(self._items) > self._capacity:
                self._drop(next(iter(self._items)))

    def _drop(self, key: _Key) -> None:
        """Forget ``key`` (the lock is held)."""
        item = self._items.pop(key, None)
        if item is None:
            return
        entry_id = item.entry.id
        keys = self._keys.get(entry_id)
        if keys == key:
            del self._keys[entry_id]
        elif isinstance(keys, set):
            keys.discard(key)
            if len(keys) == 1:
                self._keys[entry_id] = next(iter(keys))

    def discard_ids(self, ids: set[int]) -> None:
        with self._lock:
            for entry_id in ids:
                keys = self._keys.get(entry_id)
                if keys is None:
                    continue
                for key in list(keys) if isinstance(keys, set) else [keys]:  # a tuple is one key
                    self._drop(key)

    def __len__(self) -> int:
        return len(self._items)
