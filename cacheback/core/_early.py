"""A head start for the upstream call: the request is built while the cache looks up.

When a lookup goes on to embedding (``_batching.prepare_early``), the engine starts the
request's ``send()`` right away, in a task with a :class:`Gate` in its context. An adapter
whose call honours the gate (``UpstreamCall.early``) builds its request and then waits at
the gate (the cached clients do, in the SDK's last hook before sending). A miss opens the
gate and the same call goes on to send; anything else (a hit, a block, a synthesized
answer, a coalesced waiter) abandons it: it ends with :class:`Abandoned`, having sent
nothing.

A speculative call (``launch``: the setting ``speculative_upstream``) opens its gate before
the decision, so a clear miss's request is on the wire while the question still embeds.
Should the lookup find an answer after all, abandoning it cancels the call (an abortable
call: the request is aborted on the wire) and closes whatever it already returned.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["PARKED", "Abandoned", "Early", "Gate", "start_early"]

#: Longest a call parked on a worker thread waits for the decision before giving up.
SYNC_GATE_TIMEOUT_S = 600.0


class Abandoned(BaseException):
    """The cache answered, so the prepared request must not be sent.

    A BaseException: the SDKs retry on Exception, and this must end the call, not repeat it.
    """


class Gate:
    """Decided once, on the engine's loop: opened (the call sends) or abandoned.

    Waited for on that loop (``wait``) or on a worker thread (``wait_blocking``)."""

    def __init__(self) -> None:
        self._loop = asyncio.Event()
        self._thread = threading.Event()
        self._send = False
        #: Set when the call has passed the gate to send (its request is built).
        self.passed = threading.Event()

    def open(self) -> None:
        self._send = True
        self._decide()

    def abandon(self) -> None:
        self._decide()

    def _decide(self) -> None:
        self._loop.set()
        self._thread.set()

    def _passage(self) -> None:
        if not self._send:
            raise Abandoned
        self.passed.set()

    async def wait(self) -> None:
        await self._loop.wait()
        self._passage()

    def wait_blocking(self, timeout: float | None = None) -> None:
        # Bounded: should the engine never decide (it crashed), the thread must still end.
        self._thread.wait(SYNC_GATE_TIMEOUT_S if timeout is None else timeout)
        self._passage()


#: The gate of the upstream call running in this context, if it was started early.
PARKED: contextvars.ContextVar[Gate | None] = contextvars.ContextVar("cacheback_parked", default=None)


class Early:
    """One upstream call started ahead of the cache's decision."""

    __slots__ = ("_gate", "_on_wasted", "_task", "launched", "taken")

    def __init__(self, gate: Gate, task: asyncio.Task[Any]) -> None:
        self._gate = gate
        self._task = task
        self.taken = False
        self.launched = False
        self._on_wasted: Callable[[], None] | None = None

    def wait_sent(self, timeout: float) -> bool:
        """Blocking (a worker thread): until the launched call passed its gate to send."""
        return self._gate.passed.wait(timeout)

    def launch(self, on_wasted: Callable[[], None] | None = None) -> None:
        """Send now, before the decision (a speculative call); ``on_wasted`` runs if the
        cache answers after all and the call is taken back."""
        if self.launched or self.taken:
            return
        self.launched = True
        self._on_wasted = on_wasted
        self._gate.open()

    async def send(self) -> Any:
        """Let the call go out; returns what ``send()`` returns (or raises what it raises)."""
        self.taken = True
        self._gate.open()
        return await self._task  # cancelling the waiter cancels the call too

    def abandon(self) -> None:
        """The cache answered: end the call before it sends, or (launched) abort it and
        close what it returned (no-op once taken)."""
        if self.taken:
            return
        self._gate.abandon()
        self._task.cancel()
        self._task.add_done_callback(_discard if self.launched else _consume)
        if self.launched and self._on_wasted is not None:
            self._on_wasted()


def _consume(task: asyncio.Task[Any]) -> None:
    # Retrieve the outcome so that an abandoned call never logs "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _discard(task: asyncio.Task[Any]) -> None:
    """A speculative call taken back after it returned: close its open stream, if any."""
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    for part in (getattr(result, "events", None), getattr(result, "response", None)):
        close = getattr(part, "aclose", None) or getattr(part, "close", None)
        if close is None:
            continue
        try:
            closing = close()
        except Exception:  # best effort: the answer is dropped anyway
            continue
        if inspect.isawaitable(closing):
            pending = asyncio.get_running_loop().create_task(_quietly(closing))
            _CLOSING.add(pending)
            pending.add_done_callback(_CLOSING.discard)


#: Closes in progress (a task must be referenced until it ends).
_CLOSING: set[asyncio.Task[None]] = set()


async def _quietly(closing: Awaitable[Any]) -> None:
    try:
        await closing
    except Exception:  # best effort: the answer is dropped anyway
        pass


def start_early(send: Callable[[], Awaitable[Any]]) -> Early:
    """Start ``send()`` now, as a task parked at a gate of its own (the gate reaches a worker
    thread too: anyio copies the context into it)."""
    gate = Gate()
    ctx = contextvars.copy_context()
    ctx.run(PARKED.set, gate)

    async def run() -> Any:
        return await send()

    task = asyncio.get_running_loop().create_task(run(), context=ctx)
    return Early(gate, task)
