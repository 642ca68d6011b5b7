"""persister: write-behind, batched writes of new answers and LRU touches to the store."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import anyio

from ..core._batching import BatchPolicy
from ..core._hotcache import HotCache
from ..core._ports import Embedder, Store
from ..core._types import CacheEntry, NewEntry, clean_text


@dataclass(eq=False, slots=True)
class Fill:
    entry: NewEntry
    generation: int
    done: anyio.Event | None = None
    ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Touch:
    entry_id: int


@dataclass(eq=False, slots=True)
class Barrier:
    """Set once everything queued before it has been written (``engine.flush()``)."""

    done: anyio.Event


class Persister:
    name = "persister"

    def __init__(
        self,
        store: Store,
        hot: HotCache,
        policy: BatchPolicy,
        on_error: Callable[[BaseException], None],
        *,
        embedder: Embedder | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._store = store
        self._hot = hot
        self._embedder = embedder
        self._limiter = limiter
        self._policy = policy
        self._on_error = on_error
        self.written = 0

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    async def write(self, items: Sequence[Fill | Touch | Barrier]) -> None:
        fills = [i for i in items if isinstance(i, Fill)]
        touches = sorted({i.entry_id for i in items if isinstance(i, Touch)})
        try:
            if fills:
                await self._embed_missing(fills)
                ids = await self._store.put([f.entry for f in fills])
                self.written += len(ids)
                for fill, entry_id in zip(fills, ids, strict=True):
                    fill.ids.append(entry_id)
                    e = fill.entry
                    self._hot.put(
                        e.scope,
                        e.query_hash,
                        CacheEntry(
                            entry_id,
                            e.scope,
                            e.query,
                            e.answer,
                            e.payload,
                            e.created_at,
                            e.expires_at,
                            e.created_at,
                            0,
                            e.metadata,
                        ),
                        fill.generation,
                    )
            if touches:
                await self._store.touch(touches, time.time())
        except Exception as exc:
            self._on_error(exc)
            raise
        finally:
            for item in items:
                if isinstance(item, Barrier):
                    item.done.set()
            for fill in fills:
                if fill.done is not None:
                    fill.done.set()

    async def _embed_missing(self, fills: Sequence[Fill]) -> None:
        """Vectors for answers whose lookup skipped embedding (their scope was empty)."""
        todo = [f for f in fills if f.entry.vector is None]
        if not todo or self._embedder is None:
            return
        texts = [clean_text(f.entry.query) for f in todo]  # the tokenizer rejects lone surrogates
        vectors = await anyio.to_thread.run_sync(self._embedder.embed, texts, limiter=self._limiter)
        for fill, vector in zip(todo, vectors, strict=True):
            fill.entry = replace(fill.entry, vector=vector)
