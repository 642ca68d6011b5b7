"""One event loop on a daemon thread that the sync facades run the async engine on.

The thread is a daemon so that a program which never closes its client still exits; at
interpreter exit every runner still open runs its close hooks (flushing write-behind
answers and saving the index) before its loop stops.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import structlog
from anyio.from_thread import BlockingPortal

T = TypeVar("T")
log = structlog.get_logger("cacheback.portal")

_OPEN: weakref.WeakSet[PortalRunner] = weakref.WeakSet()


class PortalRunner:
    """Owns a blocking portal; ``call`` runs a coroutine function on it from any thread."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._portal: BlockingPortal | None = None
        self._error: BaseException | None = None
        self._hooks: list[Callable[[], Awaitable[Any]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name="cacheback-portal", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        _OPEN.add(self)

    def _main(self) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._portal = portal
                self._ready.set()
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # reported to the constructor if it never started
            self._error = exc
        finally:
            self._ready.set()

    @property
    def portal(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("the portal is not running")
        return self._portal

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def on_close(self, hook: Callable[[], Awaitable[Any]]) -> None:
        """Run ``hook`` on the loop when this runner closes (explicitly or at exit)."""
        self._hooks.append(hook)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN.discard(self)
        for hook in reversed(self._hooks):
            try:
                self.portal.call(hook)
            except Exception as exc:
                log.error("closing the cache failed", error=repr(exc))
        try:
            self.portal.call(self.portal.stop)
        except RuntimeError:
            pass  # already stopped
        self._thread.join(timeout=30)


@atexit.register
def _close_open_runners() -> None:
    for runner in list(_OPEN):
        runner.close()
