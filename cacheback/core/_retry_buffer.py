"""Answers the store could not take, kept in memory until it is back.

While the store is unreachable (PostgreSQL down, a broken SQLite file being reopened) the
provider still answers every request; without this those answers would be lost, and paid
for again after the outage. The buffer is bounded: past its capacity the oldest answer is
dropped (and counted), since a long outage must not grow memory without limit. It lives in
this process only: answers still in it when the process exits are lost. The same question
answered again while it waits replaces its earlier answer (the store would do the same).

A row the store keeps refusing while it is otherwise healthy (it cannot be written) is
given up after ``MAX_ATTEMPTS`` writes, so it cannot circle forever.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ._types import NewEntry

MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Unwritten:
    entry: NewEntry
    attempts: int  # writes already tried and failed


class RetryBuffer:
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("the retry buffer capacity must be >= 0 (0: no buffer)")
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Unwritten] = OrderedDict()  # by (scope, hash)
        self.buffered = 0  # answers taken in
        self.retried = 0  # answers handed back for writing once the store was back
        self.dropped = 0  # pushed out by newer ones, or given up after MAX_ATTEMPTS
        self.expired = 0  # their TTL ran out while they waited

    def __len__(self) -> int:
        return len(self._items)

    def add(self, entry: NewEntry, attempts: int = 0) -> None:
        """Keep ``entry`` for a later write (``attempts``: failed writes so far)."""
        if attempts >= MAX_ATTEMPTS or self.capacity == 0:
            self.dropped += 1
            return
        key = (entry.scope, entry.query_hash)
        self._items.pop(key, None)
        self._items[key] = Unwritten(entry, attempts)
        self.buffered += 1
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
            self.dropped += 1

    def take(self, now: float, limit: int) -> list[Unwritten]:
        """Up to ``limit`` answers to write now, oldest first; expired ones are left out."""
        out: list[Unwritten] = []
        while self._items and len(out) < limit:
            _, item = self._items.popitem(last=False)
            if item.entry.expires_at <= now:
                self.expired += 1
                continue
            out.append(item)
        self.retried += len(out)
        return out

    def put_back(self, items: list[Unwritten]) -> None:
        """Items taken but not handed on (the write queue was full): first in line again."""
        self.retried -= len(items)
        newer = list(self._items.items())
        self._items.clear()
        for item in items:
            self._items[(item.entry.scope, item.entry.query_hash)] = item
        for key, later in newer:  # answered again meanwhile: the newer answer wins
            self._items.pop(key, None)
            self._items[key] = later

    def describe(self) -> dict[str, Any]:
        return {
            "waiting": len(self._items),
            "capacity": self.capacity,
            "buffered": self.buffered,
            "retried": self.retried,
            "dropped": self.dropped,
            "expired": self.expired,
        }
