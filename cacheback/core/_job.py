"""The frame that carries one request through the pipeline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ._hotcache import HotCache
from ._types import CacheEntry, Candidate, LookupRequest, NegativeMatch, Outcome, Tier, Vector

Commit = Callable[[str, "bytes | None"], None]


@dataclass(slots=True)
class Reply:
    """What an upstream or synthesis call hands back to the caller.

    ``answer`` is the text to cache now; a stream sets ``deferred`` and calls the
    commit function it was given once it has completed normally.

    ``usage`` is what the provider call behind ``response`` consumed, for cost
    accounting: ``{"input_tokens": int, "output_tokens": int, "model": str}`` (the
    model id the provider reported, priced by ``core/_costs.py``). The upstream
    handler fills it for a plain response before returning; a deferred stream fills
    the same dict in place when the stream ends, before it calls commit (the engine
    reads it when the job finishes and again at commit). The engine stores it in the
    entry's metadata, so that a later hit knows what it saved. For a synthesized reply
    it is the cheap model's ``input_tokens``/``output_tokens`` (accounted by the engine
    already).
    """

    response: Any
    answer: str | None = None
    payload: bytes | None = None
    deferred: bool = False
    usage: dict[str, Any] = field(default_factory=dict)


class TierHandler(Protocol):
    """Provider-specific calls the upstream and synthesis stages make for a request."""

    def upstream(self, commit: Commit) -> Awaitable[Reply]: ...

    def synthesized(self, text: str | None, stream: Any | None, usage: dict[str, int]) -> Awaitable[Reply]:
        """The response for a synthesized answer: ``text`` for a plain request; for a
        streaming one ``text`` is None and ``stream`` an async iterator of text deltas,
        produced as the cheap model sends them (``usage`` is filled in place when it
        ends). Close (``aclose``) the iterator when abandoning it."""
        ...

    @property
    def streaming(self) -> bool: ...


class Preparing(Protocol):
    """Optional TierHandler methods: a head start for the upstream call.

    ``prepare()`` is called when a lookup goes on past the exact check (see
    ``prepare_early``): the handler may start building its upstream request, to be sent
    only if ``upstream()`` is called. ``release()`` is called once the job is over, to drop
    what ``prepare()`` started and ``upstream()`` did not use.
    """

    def prepare(self) -> None: ...

    def release(self) -> None: ...


def prepare_handler(handler: object) -> None:
    """``handler.prepare()`` if it has one (see Preparing)."""
    prepare = getattr(handler, "prepare", None)
    if prepare is not None:
        prepare()


def release_handler(handler: object) -> None:
    """``handler.release()`` if it has one (see Preparing)."""
    release = getattr(handler, "release", None)
    if release is not None:
        release()


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
    handler: TierHandler | None = None
    # The hot cache's generation when the job began: a decision it makes is remembered
    # only if nothing was invalidated (deleted, blocklisted) while it was on its way.
    generation: int = 0
    started: float = field(default_factory=time.perf_counter)
    now: float = field(default_factory=time.time)
    vector: Vector | None = None
    negative: NegativeMatch | None = None
    candidates: list[Candidate] = field(default_factory=list)
    guard_reasons: tuple[str, ...] = ()
    outcome: Outcome | None = None
    route: str | None = None
    reply: Reply | None = None
    error: BaseException | None = None
    degraded: str | None = None  # the stage whose failure sent this job around the cache
    abandoned: bool = False  # the caller stopped waiting (cancelled): never call a provider for it
    span: Any = None
    trace: dict[str, Any] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)
    on_finish: Callable[[Job], None] | None = None

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

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

    def settle_from_memory(self, hot: HotCache, now: float) -> bool:
        """Settle from a decision the hot cache remembers for this question, if it serves
        this request; replayed as it was made (a repeat of a paraphrase is still a verbatim
        hit, at its original similarity, not an exact one). False: nothing remembered."""
        hit = hot.get(self.scope, self.query_hash, now)
        if hit is None or not hit.serves(self.request):
            return False
        self.guard_reasons = hit.guard_reasons
        self.settle(hit.tier, similarity=hit.similarity, entry=hit.entry)
        return True

    def finish(self) -> None:
        if not self.done.is_set():
            if self.on_finish is not None:
                self.on_finish(self)
            self.done.set()
