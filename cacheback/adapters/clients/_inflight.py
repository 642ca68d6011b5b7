"""The calls a client has in the engine, and the upstream calls made for them.

Two things need this bookkeeping. Closing (or interpreter exit) gives calls in flight a
short grace and then cancels the upstream calls still waiting, so a hung provider cannot
hold the process for the SDK's whole timeout. And an upstream call whose callers all left
(a Ctrl-C, a cancelled task) is cancelled: nobody would read its answer. Identical
concurrent misses share one upstream call (the engine coalesces them), so a call is
cancelled only when no caller of the same question still waits in the engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio

from ...core._errors import EngineClosed

if TYPE_CHECKING:
    from ...engine._engine import AsyncEngine
    from ._core import Prepared

#: How long closing waits for calls in flight before it cancels their upstream calls.
CLOSE_GRACE_S = 1.0


class UpstreamCancelled(EngineClosed):
    """An upstream call cancelled because the client closed, or because nobody waits for it."""


def call_key(prep: Prepared, engine: AsyncEngine) -> Hashable:
    """Which callers one upstream call serves: the engine's coalescing key for calls it may
    share, so every caller that may be waiting for a shared call counts; any other call
    serves its own caller only."""
    req = prep.request
    key = None if req is None else engine.coalescing_key(req, streaming=prep.stream)
    return ("own", id(prep)) if key is None else key  # prep outlives the call: its id is not reused


class Inflight:
    """Callers in the engine per key, and the cancel scopes of upstream calls per key.

    Used from the engine's event loop only (the portal thread for the sync clients).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._waiting: Counter[Hashable] = Counter()
        self._upstream: dict[Hashable, set[anyio.CancelScope]] = {}
        self._closing = False
        self._idle: anyio.Event | None = None

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._upstream

    def enter(self, prep: Prepared) -> Hashable:
        """A caller starts waiting for the engine's answer; returns its key for ``leave``."""
        key = call_key(prep, self._engine)
        self._waiting[key] += 1
        return key

    def leave(self, key: Hashable) -> None:
        """A caller stops waiting (answered, or gone: cancelled, Ctrl-C)."""
        self._waiting[key] -= 1
        if self._waiting[key] <= 0:
            del self._waiting[key]
            # An answered caller's own upstream call is over by now: what is still running
            # for this key serves callers that all left.
            for scope in self._upstream.get(key, ()):
                scope.cancel()
        self._check_idle()

    @contextmanager
    def upstream(self, prep: Prepared) -> Iterator[None]:
        """Run an upstream call cancellably; raises UpstreamCancelled if it was cancelled."""
        key = call_key(prep, self._engine)
        scopes = self._upstream.setdefault(key, set())
        with anyio.CancelScope() as scope:
            scopes.add(scope)
            if self._closing or key not in self._waiting:
                scope.cancel()  # closing, or the caller left before the call started
            try:
                yield
            finally:
                scopes.discard(scope)
                if not scopes:
                    self._upstream.pop(key, None)
                self._check_idle()
        if scope.cancelled_caught:
            why = "the client closed" if self._closing else "its caller stopped waiting"
            raise UpstreamCancelled(f"the upstream call was cancelled: {why}")

    async def settle(self) -> None:
        """Closing: wait up to CLOSE_GRACE_S for calls in flight, then cancel every upstream
        call still running (and any started from now on)."""
        if not self.idle:
            self._idle = anyio.Event()
            with anyio.move_on_after(CLOSE_GRACE_S):
                await self._idle.wait()
        self._closing = True
        for scopes in self._upstream.values():
            for scope in scopes:
                scope.cancel()

    def _check_idle(self) -> None:
        if self._idle is not None and self.idle:
            self._idle.set()
