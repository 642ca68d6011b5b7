"""normalize: cacheability, and repeats answered without embedding.

A repeat is answered from memory (the hot cache) or, when memory does not have it (after a
restart, or written by another process), by the exact key in the store, checked before any
embedding. The blocklist check of such a hit uses the vector stored with the entry, so an
exact repeat never costs an inference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from ..core._batching import BatchPolicy
from ..core._hotcache import HotCache
from ..core._job import Job
from ..core._pending import PendingEntries
from ..core._stage import Stage
from ..core._store_ports import ExactQuery, Store
from ..core._types import CacheEntry, NegativeMatch, Tier

_DRAIN = BatchPolicy(max_batch=64, max_wait_s=0.0)  # take what is queued, never wait


class Normalize(Stage):
    name = "normalize"

    def __init__(
        self,
        hot: HotCache,
        store: Store,
        *,
        has_embedder: bool,
        negatives: Callable[[], int],
        pending: PendingEntries | None = None,
        negative_threshold: Callable[[], float] = lambda: 1.0,
        usable: Callable[[], bool] = lambda: True,
    ) -> None:
        self._usable = usable
        self._negatives = negatives
        self._hot = hot
        self._entries = store.entries
        self._changes = store.changes
        self._blocklist = store.blocklist
        self._pending = pending if pending is not None else PendingEntries()
        self._threshold = negative_threshold
        self._has_embedder = has_embedder
        self._seen = store.changes.deletions

    @property
    def policy(self) -> BatchPolicy:
        return _DRAIN

    def settle_now(self, job: Job) -> bool:
        """A repeat whose answer memory holds (its row written), settled as ``process``
        would settle it, on the caller's task or thread (safe on any thread: it only reads,
        and the hot cache locks). Entries deleted since the last batch: ``process`` drops
        them from memory first, so the request goes that way."""
        req = job.request
        if not (req.cacheable and req.read) or self._changes.deletions != self._seen:
            return False
        if not self._usable():
            return False
        return job.settle_from_memory(self._hot, job.now, written_only=True)

    def _forget_deleted(self) -> None:
        """Entries deleted or evicted since the last look are dropped from memory first."""
        changes = self._changes
        if changes.deletions == self._seen:
            return
        gone = changes.deleted_since(self._seen)
        self._seen = changes.deletions
        if gone is None:
            self._hot.bump()
            self._pending.clear()
        else:
            self._hot.discard_ids(set(gone))
            self._pending.discard_ids(set(gone))

    async def process(self, jobs: Sequence[Job]) -> None:
        if not self._usable():
            around_the_cache(jobs)
            return
        self._forget_deleted()
        waiting: list[Job] = []
        to_check: list[Job] = []
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
                if job.outcome is not None and job.outcome.entry is not None and job.outcome.entry.id == 0:
                    waiting.append(job)  # its row is being written: report the real id
                continue
            if not self._has_embedder:
                job.route = "vector_search"
            elif req.read:
                to_check.append(job)
        if not waiting:
            if to_check:
                await self._check(to_check)
        elif len(waiting) == 1 and not to_check:
            await self._resolve(waiting[0])
        else:
            async with anyio.create_task_group() as tg:  # the store round trips overlap
                if to_check:
                    tg.start_soon(self._check, to_check)
                for job in waiting:
                    tg.start_soon(self._resolve, job)
        maybe_empty = [
            j for j in to_check if j.outcome is None and j.route is None and self._scope_empty(j.scope)
        ]
        if maybe_empty:
            await self._skip_embedding_if_empty(maybe_empty)

    def _scope_empty(self, scope: str) -> bool:
        if self._negatives() or self._pending.size(scope):
            return False
        return self._entries.scope_size(scope) == 0

    async def _check(self, jobs: Sequence[Job]) -> None:
        """The exact keys in the store, before any embedding: one store call for the batch."""
        found = await self._entries.find_exact_many(
            [ExactQuery(job.scope, job.query_hash, job.now) for job in jobs]
        )
        hits: list[tuple[Job, CacheEntry]] = []
        for job, entry in zip(jobs, found, strict=True):
            job.exact_checked = True
            if entry is not None:
                hits.append((job, entry))
        if len(hits) > 1 and self._negatives() > 0:
            async with anyio.create_task_group() as tg:  # their blocklist searches overlap
                for job, entry in hits:
                    tg.start_soon(self._found, job, entry)
        else:
            for job, entry in hits:
                await self._found(job, entry)

    async def _found(self, job: Job, entry: CacheEntry) -> None:
        """An exact hit, unless the blocklist refuses the question (its stored vector)."""
        if job.request.check_negative and self._negatives() > 0:
            if entry.vector is None:
                return  # no stored vector to check the blocklist with: the full path decides
            found = await self._blocklist.search(entry.vector, 1)
            if found and found[0][1] >= self._threshold():
                neg, sim = found[0]
                job.vector = entry.vector
                job.negative = NegativeMatch(neg.id, neg.query, neg.reason, neg.category, neg.severity, sim)
                job.settle(Tier.BLOCKED, similarity=sim, negative=job.negative)
                return
        job.settle_exact(entry)
        self._hot.put(job.scope, job.query_hash, entry, job.generation)

    async def _resolve(self, job: Job) -> None:
        await settle_written(job, self._hot)

    async def _skip_embedding_if_empty(self, jobs: list[Job]) -> None:
        """Nothing in an empty scope can match and the blocklist is empty: the exact check
        was all there was to do, and the indexer embeds the answer after storing it. Catch
        up on other processes' writes first, so "empty" is current."""
        await self._changes.sync()
        for job in jobs:
            if self._scope_empty(job.scope):
                job.route = "vector_search"


def around_the_cache(jobs: Sequence[Job]) -> None:
    """The store is broken or not open: every request goes straight upstream (or misses)."""
    for job in jobs:
        if not job.request.cacheable and job.call is None:
            job.settle(Tier.BYPASS, detail=job.request.bypass_reason)
        elif job.call is not None:
            job.degraded = "store (unavailable)"
            job.route = "upstream"
        else:
            job.settle(Tier.MISS, detail="cache degraded: the store is unavailable")


async def settle_written(job: Job, hot: HotCache) -> None:
    """A job settled from memory on an answer whose row is still being written (entry id 0):
    wait for the write (a few milliseconds), so the hit reports its real entry id."""
    outcome = job.outcome
    if outcome is None or outcome.entry is None or outcome.entry.id > 0:
        return
    remembered = hot.get(job.scope, job.query_hash, job.now)
    if remembered is None:
        return
    entry: CacheEntry | None = None
    if remembered.entry.id > 0:  # written meanwhile
        entry = remembered.entry
    elif remembered.pending is not None:
        entry = await remembered.pending.stored()
    if entry is not None:
        job.settle(outcome.tier, similarity=outcome.similarity, entry=entry)
