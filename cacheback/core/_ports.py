"""The ports that adapters implement. Stages see only these, never a concrete adapter.

Embedder and VectorIndex are synchronous: the engine calls them on worker threads.
The storage ports and LLM are asynchronous: they own their own I/O strategy. The storage
ports (``Store`` and its parts) live in ``_store_ports`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable

from ._store_ports import Blocklist, ChangeFeed, Counters, Entries, Maintenance, Store
from ._types import Vector

__all__ = [
    "LLM",
    "Blocklist",
    "ChangeFeed",
    "Counters",
    "Embedder",
    "Entries",
    "LLMReply",
    "Maintenance",
    "MissPredictor",
    "PredictsMisses",
    "Store",
    "VectorIndex",
]


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
class MissPredictor(Protocol):
    """A cheap test, before inference, that a question cannot reach a similarity in its
    scope (``engine/_speculation.py``). Thread-safe: it runs on the embedding worker.

    Only speed depends on it, never an answer: a question it calls a clear miss is still
    looked up in full; its upstream call just starts at once."""

    def clear_misses(self, scopes: Sequence[str], texts: Sequence[str], threshold: float) -> list[bool]:
        """Blocking. True for each text (a match text, as embedded) that nothing stored in
        its scope can reach at ``threshold``."""
        ...

    def learn(self, scope: str, text: str) -> None:
        """A question stored in ``scope``, as stored: cheap (queued), on any thread."""
        ...


@runtime_checkable
class PredictsMisses(Protocol):
    """An embedder that offers a :class:`MissPredictor` consistent with its vectors."""

    def miss_predictor(self, margin: float | None = None) -> MissPredictor:
        """Blocking (it may load a table); called on a worker thread."""
        ...


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
