"""The storage ports: small protocols a second backend can implement in a day.

A backend is one ``Store``: a lifecycle plus five parts, each its own protocol of at most
ten members. The engine and the stages see only these; a contract test suite
(``tests/store_contract``) runs over every implementation.

Write path: ``Entries.put`` commits rows durably (group-committed by the persister within
milliseconds of the answer); a row may arrive without its vector, which is then exact-only
until ``attach_vectors`` gives it one. ``unindexed`` lists rows still without a vector, so
a restart embeds and indexes what a crash left behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ._types import CacheEntry, NegativeEntry, NewEntry, Vector


class SearchQuery(NamedTuple):
    """One lookup's ``search`` arguments (its ``now`` decides which entries are live)."""

    scope: str
    vector: Vector
    now: float


class ExactQuery(NamedTuple):
    """One lookup's ``find_exact`` arguments."""

    scope: str
    query_hash: str
    now: float


@runtime_checkable
class Entries(Protocol):
    """Cached answers: exact lookup, scoped vector search and the write path."""

    async def find_exact_many(self, queries: Sequence[ExactQuery]) -> list[CacheEntry | None]:
        """For each query, in order, the live entry of its scope with its hash (with its
        vector when it has one) or None: the exact checks of a micro-batch of lookups in one
        round trip (or one per few hundred keys)."""
        ...

    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """Live entries of ``scope`` nearest to ``vector`` (cosine), best first; never an
        expired, evicted or deleted one."""
        ...

    async def search_many(
        self, queries: Sequence[SearchQuery], k: int
    ) -> list[list[tuple[CacheEntry, float]]]:
        """``search`` for each query of a micro-batch of lookups, in order, with the same
        answers, in fewer round trips than one search each."""
        ...

    async def put(self, entries: Sequence[NewEntry]) -> list[int]:
        """Commit (insert, or replace the same scope and hash) and return the ids; evicts
        the least recently used past the cap. Entries without a vector are exact-only."""
        ...

    async def attach_vectors(self, ids: Sequence[int], vectors: Vector) -> None:
        """Give stored rows their vectors (row i of ``vectors`` for ``ids[i]``); ids that
        are gone meanwhile are skipped."""
        ...

    async def unindexed(self, limit: int) -> list[CacheEntry]:
        """Live rows that have no vector yet (oldest first)."""
        ...

    async def touch(self, ids: Sequence[int], now: float) -> None:
        """Record hits: one per occurrence of an id (an id may repeat), last access ``now``."""
        ...

    async def get(self, entry_id: int) -> CacheEntry | None: ...

    async def delete(self, ids: Sequence[int]) -> int: ...

    def scope_size(self, scope: str) -> int | None:
        """Searchable entries of ``scope`` this process knows of (None: cannot tell cheaply).
        Zero lets a lookup skip embedding: nothing in the scope could match semantically."""
        ...


@runtime_checkable
class Maintenance(Protocol):
    """Operator actions over all entries, and the feedback on one."""

    async def evict_expired(self, now: float) -> int: ...

    async def clear(self, scope_prefix: str | None = None) -> int: ...

    async def count(self) -> int: ...

    async def list(self, limit: int = 100, offset: int = 0, *, before: int | None = None) -> list[CacheEntry]:
        """Entries newest first (highest id first), expired ones included; ``before``: only
        ids below it (keyset paging: every page costs what the first does, where an
        ``offset`` makes the store walk past every row before it)."""
        ...

    async def set_hit_threshold(self, entry_id: int, threshold: float | None) -> bool:
        """Store the entry's own verbatim threshold (None: none, the global one alone), read
        back with the entry by every read; False if the entry does not exist."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """What other processes or replicas changed; the engine's hot cache follows it."""

    @property
    def deletions(self) -> int:
        """Grows whenever entries are deleted, evicted or expired (by anyone, once seen)."""
        ...

    def deleted_since(self, count: int) -> list[int] | None:
        """Ids deleted after ``deletions`` was ``count``; None when no longer known."""
        ...

    async def sync(self) -> None:
        """Catch up on what others wrote and deleted (called about once a second)."""
        ...


@runtime_checkable
class Blocklist(Protocol):
    """The negative cache: known-bad queries, matched semantically."""

    async def add(
        self,
        query: str,
        vector: Vector,
        reason: str,
        category: str,
        severity: int,
        metadata: dict[str, Any],
        now: float,
    ) -> int: ...

    async def search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]: ...

    async def get(self, entry_id: int) -> NegativeEntry | None: ...

    async def list(self, category: str | None = None, limit: int | None = None) -> list[NegativeEntry]: ...

    async def remove(self, entry_id: int) -> bool: ...

    async def report_false_positive(self, entry_id: int) -> int:
        """Increment and return the report count (-1 if the entry does not exist)."""
        ...

    async def count(self) -> int: ...

    def known_count(self) -> int | None:
        """Entries in an in-memory copy known to be current without asking the database
        (None: there is none now; ``count`` asks). The negative gate reads this on every
        request, so it never costs a round trip."""
        ...


@runtime_checkable
class Counters(Protocol):
    """Cumulative counters (hits, misses, tokens and money saved), shared by all processes."""

    async def load(self) -> dict[str, float]: ...

    async def add(self, deltas: dict[str, float]) -> None: ...


@runtime_checkable
class Store(Protocol):
    """One storage backend: its lifecycle and its parts."""

    @property
    def entries(self) -> Entries: ...

    @property
    def maintenance(self) -> Maintenance: ...

    @property
    def changes(self) -> ChangeFeed: ...

    @property
    def blocklist(self) -> Blocklist: ...

    @property
    def counters(self) -> Counters: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What stats and /health show: backend, location, health (``degraded`` and why)."""
        ...
