"""vector_search: the exact entry or the top-k live candidates within the request's scope.

Answers this process has returned but the store has not indexed yet are searched in the
pending set next to the store (read-your-writes)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._pending import PendingEntries, merge
from ..core._stage import Stage
from ..core._store_ports import Entries, ExactQuery, SearchQuery
from ..core._text_hash import text_hash_off_loop
from ..core._types import CacheEntry, Candidate

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
        reads = [job for job in jobs if job.request.read]
        unchecked = [job for job in reads if not job.exact_checked]
        if unchecked:  # one store call for the batch's exact keys
            found_exact = await self._entries.find_exact_many(
                [ExactQuery(job.scope, job.query_hash, job.now) for job in unchecked]
            )
            for job, entry in zip(unchecked, found_exact, strict=True):
                if entry is not None:
                    job.settle_exact(entry)
        semantic = [j for j in reads if j.outcome is None and j.request.semantic and j.vector is not None]
        if not semantic:
            return
        k = self._top_k
        # One store call for the micro-batch: one catch-up and one read of the candidates.
        queries = [SearchQuery(job.scope, job.vector, job.now) for job in semantic if job.vector is not None]
        found_all = await self._entries.search_many(queries, k)
        for job, query, found in zip(semantic, queries, found_all, strict=True):
            if self._pending.size(job.scope):
                found = merge(found, await self._pending.search(job.scope, query.vector, k, job.now), k)
            await self._settle(job, found)

    @staticmethod
    async def _settle(job: Job, found: list[tuple[CacheEntry, float]]) -> None:
        for entry, sim in found:
            # Stored while this job was embedding (after its exact check): still exact.
            if sim >= _SAME_TEXT and await text_hash_off_loop(entry.query) == job.query_hash:
                job.settle_exact(entry)
                return
        job.candidates = [Candidate(e, s) for e, s in found]

