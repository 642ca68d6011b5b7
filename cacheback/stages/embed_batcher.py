"""embed_batcher: micro-batches queued queries and embeds them on a worker thread."""

from __future__ import annotations

from collections.abc import Sequence

import anyio.to_thread
from anyio import CapacityLimiter

from ..engine._batching import BatchPolicy
from ..engine._job import Job
from ..engine._ports import Embedder
from ..engine._stage import Stage


class EmbedBatcher(Stage):
    name = "embed_batcher"

    def __init__(self, embedder: Embedder, policy: BatchPolicy, limiter: CapacityLimiter) -> None:
        self._embedder = embedder
        self._policy = policy
        self._limiter = limiter
        self.batches = 0
        self.embedded = 0

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    async def process(self, jobs: Sequence[Job]) -> None:
        texts = [job.request.query for job in jobs]
        vectors = await anyio.to_thread.run_sync(self._embedder.embed, texts, limiter=self._limiter)
        self.batches += 1
        self.embedded += len(texts)
        for job, vec in zip(jobs, vectors, strict=True):
            job.vector = vec
