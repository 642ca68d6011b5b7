"""The frame that carries one request through the pipeline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._call import Answer, UpstreamCall, Usage
from ._early import Early
from ._hotcache import HotCache
from ._types import CacheEntry, Candidate, LookupRequest, NegativeMatch, Outcome, Tier, Vector

#: Stores an answer the engine saw (write-behind): its text and the payload to replay.
Commit = Callable[[str, "bytes | None"], None]


def coalescing_key(
    request: LookupRequest, scope: str, query_hash: str, *, streaming: bool
) -> tuple[str, str] | None:
    """Which concurrent misses share one upstream call: the same question in the same scope,
    read from and answered for the cache. Streams are answered live, chunk by chunk, so
    they are never shared (None)."""
    if streaming or not request.cacheable or not request.read:
        return None
    return (scope, query_hash)


@dataclass(eq=False, slots=True)
class Job:
    request: LookupRequest
    namespace: str
    scope: str
    query_hash: str
    #: How to ask the provider (None: a lookup only, answered from the cache or not at all).
    call: UpstreamCall | None = None
    # The hot cache's generation when the job began: a decision it makes is remembered
    # only if nothing was invalidated (deleted, blocklisted) while it was on its way.
    generation: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float = 0.0  # when it was settled, if it was finished later (on another thread)
    now: float = field(default_factory=time.time)
    vector: Vector | None = None
    exact_checked: bool = False  # the store had no entry under this exact key (normalize looked)
    negative: NegativeMatch | None = None
    candidates: list[Candidate] = field(default_factory=list)
    guard_reasons: tuple[str, ...] = ()
    outcome: Outcome | None = None
    route: str | None = None
    early: Early | None = None  # the upstream call, started ahead of the decision
    #: What the provider answered (a ``Streamed`` whose events the engine reads as they pass).
    response: Any = None
    answer: Answer | None = None  # what of a plain response was cacheable
    usage: Usage = field(default_factory=dict)  # the upstream call's (a stream's: once it ends)
    #: A synthesized answer: its text, or (streaming) its text deltas as the model writes them.
    synthesis: str | AsyncIterator[str] | None = None
    synthesis_usage: dict[str, int] = field(default_factory=dict)  # a stream's: once it ends
    error: BaseException | None = None
    degraded: str | None = None  # the stage whose failure sent this job around the cache
    abandoned: bool = False  # the caller stopped waiting (cancelled): never call a provider for it
    span: Any = None
    trace: dict[str, Any] = field(default_factory=dict)
    # ``done``'s event, made when something first waits for it: a job settled at once
    # (a repeat from memory) is never waited for.
    _done: anyio.Event | None = None
    _over: bool = False  # finished (``finish`` ran)
    on_finish: Callable[[Job], None] | None = None
    on_abandon: Callable[[Job], None] | None = None  # set while it waits for a shared call
    #: Work that must not delay the caller (storing a provider's answer): the runner runs it
    #: right after the caller has been woken with the answer, before anything else queued.
    after: Callable[[], None] | None = None

    @property
    def done(self) -> anyio.Event:
        """Set once the job is finished."""
        if self._done is None:
            self._done = anyio.Event()
            if self._over:
                self._done.set()
        return self._done

    @property
    def finished(self) -> bool:
        return self._over

    def elapsed_ms(self) -> float:
        return ((self.ended or time.perf_counter()) - self.started) * 1000.0

    def settle(
        self,
        tier: Tier,
        *,
        similarity: float | None = None,
        entry: CacheEntry | None = None,
        negative: NegativeMatch | None = None,
        detail: str | None = None,
    ) -> Outcome:
        """Set (and return) this job's outcome, carrying what the job knows so far."""
        self.outcome = Outcome(
            tier,
            similarity=similarity,
            entry=entry,
            candidates=tuple(self.candidates),
            negative=negative,
            guard_reasons=self.guard_reasons,
            scope=self.scope,
            query_hash=self.query_hash,
            vector=self.vector,
            detail=detail,
        )
        return self.outcome

    def settle_exact(self, entry: CacheEntry) -> Outcome:
        return self.settle(Tier.EXACT, similarity=1.0, entry=entry)

    def settle_from_memory(self, hot: HotCache, now: float, *, written_only: bool = False) -> bool:
        """Settle from a decision the hot cache remembers for this question, if it serves
        this request; replayed as it was made (a repeat of a paraphrase is still a verbatim
        hit, at its original similarity, not an exact one). False: nothing remembered (or,
        ``written_only``, an answer whose row is still being written)."""
        hit = hot.get(self.scope, self.query_hash, now)
        if hit is None or not hit.serves(self.request) or (written_only and hit.entry.id <= 0):
            return False
        self.guard_reasons = hit.guard_reasons
        self.settle(hit.tier, similarity=hit.similarity, entry=hit.entry)
        return True

    def abandon(self) -> None:
        """The caller stopped waiting (cancelled): nobody reads this job's answer."""
        self.abandoned = True
        if self.on_abandon is not None:
            self.on_abandon(self)

    def release(self) -> None:
        """The job is over: a call started early and not taken is dropped unsent."""
        if self.early is not None:
            self.early.abandon()
            self.early = None

    def finish(self) -> None:
        if not self._over:
            if self.on_finish is not None:
                self.on_finish(self)
            self._over = True
            if self._done is not None:
                self._done.set()
