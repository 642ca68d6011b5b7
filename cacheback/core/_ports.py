"""The ports that adapters implement. Stages see only these, never a concrete adapter.

Embedder and VectorIndex are synchronous: the engine calls them on worker threads.
Store and LLM are asynchronous: they own their own I/O strategy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable

from ._types import CacheEntry, NegativeEntry, NewEntry, Vector


@runtime_checkable
class Embedder(Protocol):
    """Turns inputs into L2-normalised float32 vectors (one row each)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vector:
        """Blocking; called on a worker thread. Returns shape (len(texts), dim)."""
        ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class MediaEmbedder(Protocol):
    """Turns encoded media (image file bytes, an audio file) into L2-normalised float32
    vectors, one row each; any object with these members can be configured (BYO)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_media(self, items: Sequence[bytes]) -> Vector:
        """Blocking; called on a worker thread. Returns shape (len(items), dim)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def is_media_embedder(obj: object) -> TypeGuard[MediaEmbedder]:
    """Whether ``obj`` has the MediaEmbedder members, looked up on its type: ``isinstance``
    would read ``dim``, and reading it loads many models."""
    return all(hasattr(type(obj), member) for member in ("name", "dim", "embed_media", "describe"))


@runtime_checkable
class VectorIndex(Protocol):
    """Approximate (or exact) inner-product search over labelled vectors. Thread-safe."""

    @property
    def dim(self) -> int: ...

    def add(self, ids: Sequence[int], vectors: Vector) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(
        self, vector: Vector, k: int, allowed: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (id, cosine similarity), best first, only ids for which ``allowed`` holds."""
        ...

    def __len__(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Store(Protocol):
    """Durable entries, the negative list and counters, plus scoped vector search."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find_exact(self, scope: str, query_hash: str, now: float) -> CacheEntry | None: ...

    @property
    def deletions(self) -> int:
        """A counter that grows whenever entries are deleted, evicted or expired (by any
        process, once seen): the engine drops its in-memory exact-hit map when it moves."""
        ...

    def scope_size(self, scope: str) -> int | None:
        """Searchable entries of ``scope`` this process knows of (None: cannot tell cheaply).

        Zero lets a lookup skip embedding: nothing in the scope could match semantically."""
        ...

    def deleted_since(self, count: int) -> list[int] | None:
        """Ids deleted after ``deletions`` was ``count``; None when no longer known."""
        ...

    async def sync(self) -> None:
        """Catch up on writes made by other processes sharing the store."""
        ...

    async def search(self, scope: str, vector: Vector, k: int, now: float) -> list[tuple[CacheEntry, float]]:
        """Live entries of ``scope`` nearest to ``vector``, best first (never stale ones)."""
        ...

    async def put(self, entries: Sequence[NewEntry]) -> list[int]:
        """Insert or replace (same scope and hash) and return the ids; evicts LRU past the cap."""
        ...

    async def touch(self, ids: Sequence[int], now: float) -> None: ...

    async def get(self, entry_id: int) -> CacheEntry | None: ...

    async def delete(self, ids: Sequence[int]) -> int: ...

    async def evict_expired(self, now: float) -> int: ...

    async def clear(self, scope_prefix: str | None = None) -> int: ...

    async def count(self) -> int: ...

    async def entries(self, limit: int = 100, offset: int = 0) -> list[CacheEntry]: ...

    async def negative_add(
        self,
        query: str,
        vector: Vector,
        reason: str,
        category: str,
        severity: int,
        metadata: dict[str, Any],
        now: float,
    ) -> int: ...

    async def negative_search(self, vector: Vector, k: int) -> list[tuple[NegativeEntry, float]]: ...

    async def negative_get(self, entry_id: int) -> NegativeEntry | None: ...

    async def negative_list(
        self, category: str | None = None, limit: int | None = None
    ) -> list[NegativeEntry]: ...

    async def negative_remove(self, entry_id: int) -> bool: ...

    async def negative_report_false_positive(self, entry_id: int) -> int:
        """Increment and return the report count (-1 if the entry does not exist)."""
        ...

    async def negative_count(self) -> int: ...

    async def load_counters(self) -> dict[str, float]: ...

    async def add_counters(self, deltas: dict[str, float]) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LLMReply:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    """A cheap chat model (the synthesis tier)."""

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        timeout: float,  # noqa: ASYNC109 - forwarded to the HTTP client, not a cancel scope
    ) -> LLMReply: ...

    def stream(
        self, messages: Sequence[dict[str, str]], *, max_tokens: int, timeout: float
    ) -> AsyncIterator[str]: ...
