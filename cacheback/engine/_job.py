"""The frame that carries one request through the pipeline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ._types import Candidate, LookupRequest, NegativeMatch, Outcome, Vector

Commit = Callable[[str, "bytes | None"], None]


@dataclass(slots=True)
class Reply:
    """What an upstream or synthesis call hands back to the caller.

    ``answer`` is the text to cache now; a stream sets ``deferred`` and calls the
    commit function it was given once it has completed normally.
    """

    response: Any
    answer: str | None = None
    payload: bytes | None = None
    deferred: bool = False
    usage: dict[str, int] = field(default_factory=dict)


class TierHandler(Protocol):
    """Provider-specific calls the upstream and synthesis stages make for a request."""

    def upstream(self, commit: Commit) -> Awaitable[Reply]: ...

    def synthesized(
        self, text: str | None, stream: Any | None, usage: dict[str, int]
    ) -> Awaitable[Reply]: ...

    @property
    def streaming(self) -> bool: ...


@dataclass(eq=False, slots=True)
class Job:
    request: LookupRequest
    namespace: str
    scope: str
    query_hash: str
    handler: TierHandler | None = None
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
    span: Any = None
    trace: dict[str, Any] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)
    on_finish: Callable[[Job], None] | None = None

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def finish(self) -> None:
        if not self.done.is_set():
            if self.on_finish is not None:
                self.on_finish(self)
            self.done.set()


AsyncCallable = Callable[[], Awaitable[Any]]
