"""One event loop on a daemon thread (anyio's blocking portal) that the sync facades run
the async engine on.

The thread is a daemon so that a program which never closes its client still exits; at
interpreter exit every runner still open runs its close hooks (flushing write-behind
answers and saving the index) before its loop stops.

A runner belongs to the process that made it: a forked child has no portal thread, and
the parent's connections and threads are not its own, so in the child a parent's runner
refuses calls (instead of waiting forever) and closing it does nothing.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from cacheback._logging import get_logger

from .core._errors import EngineClosed

T = TypeVar("T")
log = get_logger("cacheback.portal")

_OPEN: weakref.WeakSet[PortalRunner] = weakref.WeakSet()
_CLOSERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # close_soon()'s, until they end


class PortalRunner:
    """Owns a blocking portal; ``call`` runs a coroutine function on it from any thread."""

    def __init__(self) -> None:
        self._hooks: list[Callable[[], Awaitable[Any]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.pid = os.getpid()
        # anyio's own portal thread (a daemon); raises here if its loop cannot start.
        self._cm = start_blocking_portal()
        self._portal = self._cm.__enter__()
        self._portal.call(_name_thread)
        _OPEN.add(self)
        _hook_exit()

    @property
    def portal(self) -> BlockingPortal:
        return self._portal

    @property
    def usable(self) -> bool:
        """Open, and in the process that started it."""
        return not self._closed and self.pid == os.getpid()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.pid != os.getpid():
            raise EngineClosed("this cache was opened before a fork: it belongs to the parent process")
        if self._closed:
            raise EngineClosed("the cache is closed")
        return self._call(fn, *args)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            future = self.portal.start_task_soon(fn, *args)
        except RuntimeError as exc:  # stopped by a close in another thread meanwhile
            raise EngineClosed("the cache is closed") from exc
        try:
            return future.result()
        except BaseException:
            # A Ctrl-C (or any exception) in the waiting thread: the task must not go on
            # without its caller (an upstream call nobody would read). No-op once done.
            future.cancel()
            raise

    def on_close(self, hook: Callable[[], Awaitable[Any]]) -> None:
        """Run ``hook`` on the loop when this runner closes (explicitly or at exit)."""
        self._hooks.append(hook)

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # the parent's: its threads are not here, and its files are the parent's
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN.discard(self)
        for hook in reversed(self._hooks):
            try:
                self._call(hook)
            except Exception as exc:
                log.error("closing the cache failed", error=repr(exc))
        try:
            self._cm.__exit__(None, None, None)  # stops the portal and joins its thread
        except RuntimeError:
            pass  # already stopped

    def close_soon(self) -> None:
        """Close on a thread of its own (for a finalizer: it may run on any thread, this
        runner's loop thread included, and must not block whoever dropped the last reference).

        Not a daemon: the interpreter waits for it at exit, so the flush completes.
        """
        if not self.usable:
            return
        closer = threading.Thread(target=self.close, name="cacheback-close", daemon=False)
        try:
            closer.start()
        except RuntimeError:  # the interpreter is shutting down: the atexit hook closes it
            return
        _CLOSERS.add(closer)


def _name_thread() -> None:
    # Told apart from other portals in thread listings (and by the tests).
    threading.current_thread().name = "cacheback-portal"


#: In a forked child, the parent's portal context managers, kept alive for good: collecting
#: one would run its exit, which waits forever for a portal thread the child does not have.
_FORK_ORPHANS: list[Any] = []


def _forget_parents_runners() -> None:
    # In a forked child: the runners are the parent's (their threads did not survive the
    # fork); exit must not try to close them, nor may the garbage collector.
    _FORK_ORPHANS.extend(runner._cm for runner in _OPEN)
    _OPEN.clear()


_EXIT_HOOKED_IN = 0  # the process whose exit closes its runners through multiprocessing too


def _hook_exit() -> None:
    # A multiprocessing (fork) child ends with os._exit(), after multiprocessing's own
    # finalizers but without atexit: the runners it opened must be closed (flushed) then.
    # Registered with a process's first runner: the child clears the parent's finalizers
    # when it starts.
    global _EXIT_HOOKED_IN
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or _EXIT_HOOKED_IN == os.getpid():
        return
    _EXIT_HOOKED_IN = os.getpid()
    mp_util.Finalize(None, _close_open_runners, exitpriority=10)


os.register_at_fork(after_in_child=_forget_parents_runners)


@atexit.register
def _close_open_runners() -> None:
    for runner in list(_OPEN):
        runner.close()
    for closer in list(_CLOSERS):  # one started late (during exit) is not joined otherwise
        closer.join(timeout=30)
