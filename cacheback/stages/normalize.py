"""normalize: cacheability, and repeats answered from memory without embedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core._hotcache import HotCache
from ..core._job import Job
from ..core._ports import Store
from ..core._stage import Stage
from ..core._types import Tier


class Normalize(Stage):
    name = "normalize"

    def __init__(
        self, hot: HotCache, store: Store, *, has_embedder: bool, negatives: Callable[[], int]
    ) -> None:
        self._negatives = negatives
        self._hot = hot
        self._store = store
        self._has_embedder = has_embedder
        self._seen = store.deletions

    async def process(self, jobs: Sequence[Job]) -> None:
        if self._store.deletions != self._seen:  # deleted or evicted: drop them from memory
            gone = self._store.deleted_since(self._seen)
            self._seen = self._store.deletions
            if gone is None:
                self._hot.bump()
            else:
                self._hot.discard_ids(set(gone))
        maybe_empty: list[Job] = []
        for job in jobs:
            req = job.request
            if not req.cacheable:
                if job.call is not None:
                    # Uncached requests still pass the blocklist (embed → gate → upstream).
                    gate = req.check_negative and self._has_embedder and self._negatives() > 0
                    job.route = None if gate else "upstream"
                else:
                    job.settle(Tier.BYPASS, detail=req.bypass_reason)
                continue
            if req.read and job.settle_from_memory(self._hot, job.now):
                continue
            if not self._has_embedder:
                job.route = "vector_search"
            elif self._negatives() == 0 and self._store.scope_size(job.scope) == 0:
                maybe_empty.append(job)
        if maybe_empty:
            await self._skip_embedding_if_empty(maybe_empty)

    async def _skip_embedding_if_empty(self, jobs: list[Job]) -> None:
        """Nothing in an empty scope can match and the blocklist is empty: only the exact
        check stays on the request path, and the persister embeds the answer when it stores
        it. Catch up on other processes' writes first, so "empty" is current."""
        await self._store.sync()
        for job in jobs:
            if self._store.scope_size(job.scope) == 0:
                job.route = "vector_search"
