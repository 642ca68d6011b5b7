"""Blocking SDK calls on worker threads, cancellable: what a sync client's upstream call runs on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from cacheback._logging import get_logger

log = get_logger("cacheback.client")

#: Blocking SDK calls a sync client runs at once: the SDKs' connection pool limit
#: (openai's and anthropic's DEFAULT_CONNECTION_LIMITS.max_connections).
UPSTREAM_THREADS = 1000


async def run_blocking(fn: Callable[[], Any], limiter: anyio.CapacityLimiter) -> Any:
    """``fn()`` (a blocking SDK call) on a worker thread, cancellable.

    A thread cannot be stopped, so a cancelled call stops waiting at once (closing the
    client or the interpreter must not wait for the provider) and leaves the thread to end
    on its own; a stream it returns after that is closed, so its connection goes back to
    the pool instead of staying open unread.
    """
    lock = threading.Lock()
    state: dict[str, Any] = {"dropped": False, "result": None}
    # The worker thread keeps ``work`` referenced a moment after reporting its result
    # (anyio drops its locals only then): ``work`` must not keep the SDK call, which holds
    # the client, or a client dropped right after its last call survives the collection
    # meant to close it (and then waits for the next full one).
    calls = [fn]

    def work() -> Any:
        result = calls.pop()()
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
