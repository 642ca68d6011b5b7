"""embed_batcher: micro-batches queued queries and embeds them on a worker thread.

While a small batch embeds, the event loop is idle: the upstream calls of its jobs are
started then, parked before they send (``core/_early.py``, ``prepare_early``), so that a
miss sends as soon as it is known. The start is signalled from the worker thread once it
has the batch (before a speculative probe), so it never delays the hand-over.

With a miss predictor (``speculative_upstream``), the worker first asks it which questions
nothing in their scope can reach, and those calls are sent at once, not parked
(``core/_speculation.py``): their lookups go on, and a late hit takes the call back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import anyio.to_thread

from ..core._batching import BatchPolicy, prepare_early
from ..core._early import Early, start_early
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
        embed = self._speculating(jobs, texts, self._embedder.embed)
        if ahead and prepare_early(len(jobs), self._ctx.queue_depth(self.name)):
            loop, inner = asyncio.get_running_loop(), embed

            def embed(batch: Sequence[str]) -> Vector:
                # Signalled from the worker thread, first thing: the requests are built
                # while the questions are probed and embedded, never before the hand-over.
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
                launched = _Launched()
                loop.call_soon_threadsafe(_launch_all, go, stats, launched)
                if len(go) == len(batch):
                    # Only clear misses here: their inference can wait for their requests to
                    # leave, which would otherwise compete with it for the CPU (bounded).
                    launched.wait_sent(SEND_FIRST_S)
            return embed(batch)

        return speculate_then_embed


#: Longest a batch of clear misses waits for their requests to leave before its inference.
SEND_FIRST_S = 0.005


class _Launched:
    """The calls a worker launched, handed back from the loop (any thread may wait)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.early: list[Early] = []

    def done(self) -> None:
        self._ready.set()

    def wait_sent(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout):
            return
        for early in self.early:
            if not early.wait_sent(max(0.0, deadline - time.monotonic())):
                return


def _launch_all(jobs: Sequence[Job], stats: Stats, launched: _Launched | None = None) -> None:
    try:
        for job in jobs:
            if not speculable(job):  # answered or abandoned meanwhile
                continue
            assert job.call is not None
            if job.early is None:
                job.early = start_early(job.call.send)
            job.early.launch(on_wasted=lambda: stats.count("speculation_wasted"))
            stats.count("speculated")
            if launched is not None:
                launched.early.append(job.early)
    finally:
        if launched is not None:
            launched.done()


def _start_all(jobs: Sequence[Job]) -> None:
    for job in jobs:
        if not job.finished and job.early is None and job.call is not None:
            job.early = start_early(job.call.send)
