"""vector_search: the exact entry or the top-k live candidates within the request's scope.

Answers this process has returned but the store has not indexed yet are searched in the
pending set next to the store (read-your-writes)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._pending import PendingEntries, merge
from ..core._stage import Stage
from ..core._store_ports import Entries
from ..core._types import Candidate, text_hash

_DRAIN = BatchPolicy(max_batch=64, max_wait_s=0.0)
_SAME_TEXT = 0.999  # only a candidate this close can be the very same text


class VectorSearch(Stage):
    name = "vector_search"

    def __init__(self, entries: Entries, top_k: int, pending: PendingEntries | None = None) -> None:
        self._entries = entries
        self._top_k = top_k
        self._pending = pending if pending is not None else PendingEntries()

    @property
    def policy(self) -> BatchPolicy:
        # Take whatever is queued (never wait): its store round trips then overlap.
        return _DRAIN

    async def process(self, jobs: Sequence[Job]) -> None:
        if len(jobs) == 1:
            await self._one(jobs[0])
            return
        # Concurrent: the store's I/O round trips overlap instead of queueing one by one.
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(self._one, job)

    async def _one(self, job: Job) -> None:
        req = job.request
        if not req.read:
            return
        if not job.exact_checked:
            entry = await self._entries.find_exact(job.scope, job.query_hash, job.now)
            if entry is not None:
                job.settle_exact(entry)
                return
        if req.semantic and job.vector is not None:
            k = self._top_k
            found = await self._entries.search(job.scope, job.vector, k, job.now)
            if self._pending.size(job.scope):
                found = merge(found, await self._pending.search(job.scope, job.vector, k, job.now), k)
            for entry, sim in found:
                # Stored while this job was embedding (after its exact check): still exact.
                if sim >= _SAME_TEXT and text_hash(entry.query) == job.query_hash:
                    job.settle_exact(entry)
                    return
            job.candidates = [Candidate(e, s) for e, s in found]
