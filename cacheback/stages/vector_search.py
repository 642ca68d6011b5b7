"""vector_search: the exact entry or the top-k live candidates within the request's scope."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._ports import Store
from ..core._stage import Stage
from ..core._types import Candidate

_DRAIN = BatchPolicy(max_batch=64, max_wait_s=0.0)


class VectorSearch(Stage):
    name = "vector_search"

    def __init__(self, store: Store, top_k: int) -> None:
        self._store = store
        self._top_k = top_k

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
        if req.read:
            entry = await self._store.find_exact(job.scope, job.query_hash, job.now)
            if entry is not None:
                job.settle_exact(entry)
                return
            if req.semantic and job.vector is not None:
                found = await self._store.search(job.scope, job.vector, self._top_k, job.now)
                job.candidates = [Candidate(e, s) for e, s in found]
