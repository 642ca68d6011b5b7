"""A thread-safe LRU bounded by its number of items and their total size (the memos of
repeated requests: ``_key_memo``, ``_construct_memo``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedLru(Generic[V]):
    """At most ``max_items`` values whose sizes sum to at most ``max_size``; the least
    recently used go first. Any thread (sync clients work on their callers' threads)."""

    def __init__(self, max_items: int, max_size: int) -> None:
        self._max_items = max_items
        self._max_size = max_size
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            kept = self._items.get(key)
            if kept is None:
                return None
            self._items.move_to_end(key)
            return kept[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        """Keep ``value`` unless ``key`` is kept already (another thread's, equal) or it
        alone is larger than the bound."""
        if size > self._max_size:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, size)
            self._size += size
            while len(self._items) > self._max_items or self._size > self._max_size:
                _, (_, old) = self._items.popitem(last=False)
                self._size -= old

    def __len__(self) -> int:
        return len(self._items)

    def forked(self) -> None:
        """In a child after ``fork``: a parent's thread may have held the lock then."""
        self._lock = threading.Lock()
