"""normalize: cacheability, and exact repeats answered from memory without embedding."""

from __future__ import annotations

from collections.abc import Sequence

from ..engine._hotcache import HotCache
from ..engine._job import Job
from ..engine._stage import Stage
from ..engine._types import Outcome, Tier


class Normalize(Stage):
    name = "normalize"

    def __init__(self, hot: HotCache, *, has_embedder: bool) -> None:
        self._hot = hot
        self._has_embedder = has_embedder

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            req = job.request
            if not req.cacheable:
                if job.handler is not None:
                    job.route = "upstream"
                else:
                    job.outcome = Outcome(Tier.BYPASS, scope=job.scope, detail=req.bypass_reason)
                continue
            if req.read:
                entry = self._hot.get(job.scope, job.query_hash, job.now)
                if entry is not None:
                    job.outcome = Outcome(
                        Tier.EXACT,
                        similarity=1.0,
                        entry=entry,
                        scope=job.scope,
                        query_hash=job.query_hash,
                    )
                    continue
            if not self._has_embedder:
                job.route = "vector_search"
