"""embed_batcher: micro-batches queued queries and embeds them on a worker thread.

While a small batch embeds, the event loop is idle: the upstream calls of its jobs are
started then, parked before they send (``core/_early.py``, ``prepare_early``), so that a
miss sends as soon as it is known. The start is signalled from the worker thread once
inference has begun, so it never delays the embedding itself.

With a miss predictor (``speculative_upstream``), the worker first asks it which questions
nothing in their scope can reach, and those calls are sent at once, not parked
(``core/_speculation.py``): their lookups go on, and a late hit takes the call back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import anyio.to_thread

from ..core._batching import BatchPolicy, prepare_early
from ..core._early import start_early
from ..core._job import Job
from ..core._speculation import answer_floor, speculable
from ..core._stage import Stage, StageContext
from ..core._stats import Stats
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

        embed = self._speculating(jobs, texts, embed)
        vectors = await anyio.to_thread.run_sync(embed, texts, limiter=self._ctx.embed_limiter)
        self.batches += 1
        self.embedded += len(texts)
        # With an empty blocklist the gate has nothing to check: skip its hop.
        skip_gate = self._ctx.state.negatives == 0
        for job, vec in zip(jobs, vectors, strict=True):
            job.vector = vec
            if skip_gate:
                job.route = past_the_gate(job)


    def _speculating(
        self, jobs: Sequence[Job], texts: Sequence[str], embed: Callable[[Sequence[str]], Vector]
    ) -> Callable[[Sequence[str]], Vector]:
        """``embed``, first sending the calls of the clear misses among ``jobs`` (on the
        worker thread: the probe's search grows with the scope)."""
        predictor = self._ctx.miss_predictor
        if predictor is None:
            return embed
        chosen = [(job, text) for job, text in zip(jobs, texts, strict=True) if speculable(job)]
        if not chosen:
            return embed
        settings = self._ctx.state.settings
        floor = answer_floor(settings.matching, settings.synthesis, can_synthesize=self._ctx.llm is not None)
        scopes, probe_texts = [job.scope for job, _ in chosen], [text for _, text in chosen]
        loop, stats = asyncio.get_running_loop(), self._ctx.stats

        def speculate_then_embed(batch: Sequence[str]) -> Vector:
            clear = predictor.clear_misses(scopes, probe_texts, floor)
            go = [job for (job, _), miss in zip(chosen, clear, strict=True) if miss]
            if go:
                loop.call_soon_threadsafe(_launch_all, go, stats)
            return embed(batch)

        return speculate_then_embed


def _launch_all(jobs: Sequence[Job], stats: Stats) -> None:
    for job in jobs:
        if not speculable(job):  # answered or abandoned meanwhile
            continue
        assert job.call is not None
        if job.early is None:
            job.early = start_early(job.call.send)
        job.early.launch(on_wasted=lambda: stats.count("speculation_wasted"))
        stats.count("speculated")


def _start_all(jobs: Sequence[Job]) -> None:
    for job in jobs:
        if not job.finished and job.early is None and job.call is not None:
            job.early = start_early(job.call.send)
