"""negative_gate: refuses queries that match the blocklist semantically."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._stage import Stage
from ..core._store_ports import Blocklist
from ..core._types import NegativeMatch, Tier


class NegativeGate(Stage):
    policy = BatchPolicy(max_batch=64, max_wait_s=0.0)  # drain what is queued, never wait
    name = "negative_gate"

    def __init__(
        self, blocklist: Blocklist, threshold: Callable[[], float], count: Callable[[], int]
    ) -> None:
        self._blocklist = blocklist
        self._threshold = threshold
        self._count = count

    async def process(self, jobs: Sequence[Job]) -> None:
        if self._count() > 0:
            await self._check(jobs)
        for job in jobs:
            if job.outcome is None:
                job.route = past_the_gate(job)

    async def _check(self, jobs: Sequence[Job]) -> None:
        threshold = self._threshold()
        for job in jobs:
            if not job.request.check_negative or job.vector is None:
                continue
            found = await self._blocklist.search(job.vector, 1)
            if found and found[0][1] >= threshold:
                neg, sim = found[0]
                job.negative = NegativeMatch(neg.id, neg.query, neg.reason, neg.category, neg.severity, sim)
                job.settle(Tier.BLOCKED, similarity=sim, negative=job.negative)


def past_the_gate(job: Job) -> str:
    """Where a job that passed the blocklist goes: the cache, or, for a request that is
    not cached, straight upstream."""
    return "vector_search" if job.request.cacheable else "upstream"
