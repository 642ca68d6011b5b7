"""embed_batcher: micro-batches queued queries and embeds them on a worker thread.

While a small batch embeds, the event loop is idle: the upstream calls of its jobs are
started then, parked before they send (``core/_early.py``, ``prepare_early``), so that a
miss sends as soon as it is known. The start is signalled from the worker thread once
inference has begun, so it never delays the embedding itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import anyio.to_thread

from ..core._batching import BatchPolicy, prepare_early
from ..core._early import start_early
from ..core._job import Job
from ..core._stage import Stage, StageContext
from ..core._types import Vector, match_text
from .negative_gate import past_the_gate


class EmbedBatcher(Stage):
    name = "embed_batcher"

    def __init__(self, ctx: StageContext) -> None:
        assert ctx.embedder is not None
        s = ctx.state.settings.embedding
        self._ctx = ctx
        self._embedder = ctx.embedder
        self._policy = BatchPolicy(s.embed_max_batch, s.embed_max_wait_ms / 1000.0)
        self.batches = 0
        self.embedded = 0

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    async def process(self, jobs: Sequence[Job]) -> None:
        texts = [match_text(job.request.query) for job in jobs]
        ahead = [j for j in jobs if j.call is not None and j.call.early and j.request.cacheable]
        embed: Callable[[Sequence[str]], Vector] = self._embedder.embed
        if ahead and prepare_early(len(jobs), self._ctx.queue_depth(self.name)):
            loop = asyncio.get_running_loop()
            inner = embed

            def embed(batch: Sequence[str]) -> Vector:
                loop.call_soon_threadsafe(_start_all, ahead)
                return inner(batch)

        vectors = await anyio.to_thread.run_sync(embed, texts, limiter=self._ctx.embed_limiter)
        self.batches += 1
        self.embedded += len(texts)
        # With an empty blocklist the gate has nothing to check: skip its hop.
        skip_gate = self._ctx.state.negatives == 0
        for job, vec in zip(jobs, vectors, strict=True):
            job.vector = vec
            if skip_gate:
                job.route = past_the_gate(job)


def _start_all(jobs: Sequence[Job]) -> None:
    for job in jobs:
        if not job.finished and job.early is None and job.call is not None:
            job.early = start_early(job.call.send)
