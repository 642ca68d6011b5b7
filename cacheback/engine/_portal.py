"""One event loop on a daemon thread that the sync facades run the async engine on."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")


class PortalRunner:
    """Owns a blocking portal; ``call`` runs a coroutine function on it from any thread."""

    def __init__(self) -> None:
        self._cm: AbstractContextManager[BlockingPortal] | None = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self._cm.__enter__()
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def enter(self, acm: AbstractAsyncContextManager[T]) -> tuple[T, AbstractContextManager[T]]:
        cm = self.portal.wrap_async_context_manager(acm)
        return cm.__enter__(), cm

    def close(self) -> None:
        with self._lock:
            cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(None, None, None)
