"""embed_batcher: micro-batches queued queries and embeds them on a worker thread.

While a small batch embeds, the event loop is idle: the handlers of its jobs are told
to prepare their upstream requests then (``prepare_early``), so that a miss can send as
soon as it is known. The signal comes from the worker thread once inference has started,
so the preparation never delays the embedding itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import anyio.to_thread
from anyio import CapacityLimiter

from ..core._batching import BatchPolicy, prepare_early
from ..core._job import Job, prepare_handler
from ..core._ports import Embedder
from ..core._stage import Stage
from ..core._types import Vector, clean_text
from .negative_gate import past_the_gate


class EmbedBatcher(Stage):
    name = "embed_batcher"

    def __init__(
        self,
        embedder: Embedder,
        policy: BatchPolicy,
        limiter: CapacityLimiter,
        *,
        backlog: Callable[[], int] = lambda: 0,
        negatives: Callable[[], int] = lambda: 1,
    ) -> None:
        self._negatives = negatives
        self._embedder = embedder
        self._policy = policy
        self._limiter = limiter
        self._backlog = backlog
        self.batches = 0
        self.embedded = 0

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    async def process(self, jobs: Sequence[Job]) -> None:
        texts = [clean_text(job.request.query) for job in jobs]  # the tokenizer rejects lone surrogates
        ahead = [j for j in jobs if j.handler is not None and j.request.cacheable]
        embed: Callable[[Sequence[str]], Vector] = self._embedder.embed
        if ahead and prepare_early(len(jobs), self._backlog()):
            loop = asyncio.get_running_loop()
            inner = embed

            def embed(batch: Sequence[str]) -> Vector:
                loop.call_soon_threadsafe(_prepare_all, ahead)
                return inner(batch)

        vectors = await anyio.to_thread.run_sync(embed, texts, limiter=self._limiter)
        self.batches += 1
        self.embedded += len(texts)
        # With an empty blocklist the gate has nothing to check: skip its hop.
        skip_gate = self._negatives() == 0
        for job, vec in zip(jobs, vectors, strict=True):
            job.vector = vec
            if skip_gate:
                job.route = past_the_gate(job)


def _prepare_all(jobs: Sequence[Job]) -> None:
    for job in jobs:
        if not job.finished:
            prepare_handler(job.handler)
