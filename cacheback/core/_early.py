"""A head start for the upstream call: the request is built while the cache looks up.

When a lookup goes on to embedding (``_batching.prepare_early``), the engine starts the
request's ``send()`` right away, in a task with a :class:`Gate` in its context. An adapter
whose call honours the gate (``UpstreamCall.early``) builds its request and then waits at
the gate (the cached clients do, in the SDK's last hook before sending). A miss opens the
gate and the same call goes on to send; anything else (a hit, a block, a synthesized
answer, a coalesced waiter) abandons it: it ends with :class:`Abandoned`, having sent
nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
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

    __slots__ = ("_gate", "_task", "taken")

    def __init__(self, gate: Gate, task: asyncio.Task[Any]) -> None:
        self._gate = gate
        self._task = task
        self.taken = False

    async def send(self) -> Any:
        """Let the call go out; returns what ``send()`` returns (or raises what it raises)."""
        self.taken = True
        self._gate.open()
        return await self._task  # cancelling the waiter cancels the call too

    def abandon(self) -> None:
        """The cache answered: end the call before it sends (no-op once taken)."""
        if self.taken:
            return
        self._gate.abandon()
        self._task.cancel()
        self._task.add_done_callback(_consume)


def _consume(task: asyncio.Task[Any]) -> None:
    # Retrieve the outcome so that an abandoned call never logs "exception never retrieved".
    if not task.cancelled():
        task.exception()


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
