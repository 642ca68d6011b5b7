"""A head start for the upstream call: the SDK builds its request while the cache looks up.

When a lookup goes on to embedding (see ``engine._batching.prepare_early``), the client
starts the real SDK call right away, in a task (async clients) or on a worker thread (sync
clients), with a gate in its context. The SDK validates the arguments, builds the request
and reaches its ``_prepare_request`` hook, which the cached clients override to wait at
the gate. Nothing has gone out at that point. A miss opens the gate and the same call goes
on to send; anything else (a hit, a block, a synthesized answer, a coalesced waiter)
abandons it, and it ends with :class:`Abandoned` without having sent a byte.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import structlog

__all__ = [
    "PARKED",
    "Abandoned",
    "AsyncGate",
    "EarlyCall",
    "SyncGate",
    "run_blocking",
    "start_async",
    "start_sync",
]

log = structlog.get_logger("cacheback.client")


#: Longest a parked blocking call waits for the cache's decision before giving up.
SYNC_GATE_TIMEOUT_S = 600.0


class Abandoned(BaseException):
    """The cache answered, so the prepared request must not be sent.

    A BaseException: the SDKs retry on Exception, and this must end the call, not repeat it.
    """


class _Gate:
    """Decided once: opened (the call sends) or abandoned (it raises Abandoned)."""

    def __init__(self, decided: asyncio.Event | threading.Event) -> None:
        self._decided = decided
        self._send = False

    def open(self) -> None:
        self._send = True
        self._decided.set()

    def abandon(self) -> None:
        self._decided.set()

    def _passage(self) -> None:
        if not self._send:
            raise Abandoned


class AsyncGate(_Gate):
    """Where an async SDK call waits; opened or abandoned on the same event loop."""

    def __init__(self) -> None:
        super().__init__(asyncio.Event())

    async def wait(self) -> None:
        assert isinstance(self._decided, asyncio.Event)
        await self._decided.wait()
        self._passage()


class SyncGate(_Gate):
    """Where a blocking SDK call waits on its worker thread; decided from the event loop."""

    def __init__(self) -> None:
        super().__init__(threading.Event())

    def wait(self) -> None:
        assert isinstance(self._decided, threading.Event)
        # Bounded: should the engine never decide (it crashed), the thread must still end.
        self._decided.wait(SYNC_GATE_TIMEOUT_S)
        self._passage()


#: The gate of the SDK call running in this context, if it was started early.
PARKED: contextvars.ContextVar[AsyncGate | SyncGate | None] = contextvars.ContextVar(
    "cacheback_parked", default=None
)


class EarlyCall:
    """One SDK call started ahead of the cache's decision."""

    __slots__ = ("_gate", "_task", "taken")

    def __init__(self, gate: AsyncGate | SyncGate, task: asyncio.Task[Any]) -> None:
        self._gate = gate
        self._task = task
        self.taken = False

    async def send(self) -> Any:
        """Let the call go out and return what the SDK returns (or raise what it raises)."""
        self.taken = True
        self._gate.open()
        return await self._task

    def abandon(self) -> None:
        """The cache answered: end the call before it sends (no-op once taken)."""
        if self.taken:
            return
        self._gate.abandon()
        if isinstance(self._gate, AsyncGate):
            self._task.cancel()  # a thread cannot be cancelled: the gate ends it instead
        self._task.add_done_callback(_consume)


def _consume(task: asyncio.Task[Any]) -> None:
    # Retrieve the outcome so that an abandoned call never logs "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _parked(gate: AsyncGate | SyncGate) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(PARKED.set, gate)
    return ctx


def start_async(call: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> EarlyCall:
    """Start ``call(**kwargs)`` (an async SDK method) as a task parked at its gate."""
    gate = AsyncGate()

    async def run() -> Any:
        return await call(**kwargs)

    task = asyncio.get_running_loop().create_task(run(), context=_parked(gate))
    return EarlyCall(gate, task)


def start_sync(call: Callable[..., Any], kwargs: dict[str, Any], limiter: anyio.CapacityLimiter) -> EarlyCall:
    """Start ``call(**kwargs)`` (a blocking SDK method) on a worker thread parked at its gate."""
    gate = SyncGate()
    ctx = _parked(gate)

    def run() -> Any:
        return ctx.run(lambda: call(**kwargs))

    task = asyncio.get_running_loop().create_task(run_blocking(run, limiter))
    return EarlyCall(gate, task)


async def run_blocking(fn: Callable[[], Any], limiter: anyio.CapacityLimiter) -> Any:
    """``fn()`` (a blocking SDK call) on a worker thread, cancellable.

    A thread cannot be stopped, so a cancelled call stops waiting at once (closing the
    client or the interpreter must not wait for the provider) and leaves the thread to end
    on its own; a stream it returns after that is closed, so its connection goes back to
    the pool instead of staying open unread.
    """
    lock = threading.Lock()
    state: dict[str, Any] = {"dropped": False, "result": None}

    def work() -> Any:
        result = fn()
        with lock:
            if not state["dropped"]:
                state["result"] = result
                return result
        _close_stream(result)
        return result

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)
    except BaseException:
        with lock:
            state["dropped"] = True
            result, state["result"] = state["result"], None
        _close_stream(result)  # the call ended just as it was cancelled: nobody reads it
        raise
    finally:
        state["result"] = None  # no reference to the response once the caller has it


def _close_stream(result: Any) -> None:
    if result is None or not hasattr(result, "__iter__"):
        return  # a plain response holds no connection
    close = getattr(result, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # best effort: the call was abandoned anyway
            log.debug("closing an abandoned stream failed", error=repr(exc))
