"""The storage adapters' error boundary: SQLite and file-system failures become StoreError,
and the ones that will not go away by themselves mark the store broken (see ``StoreHealth``)."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from cacheback._logging import get_logger

from ...core._errors import StoreCorrupt, StoreError
from ._sqlite import is_corruption, is_fault

log = get_logger("cacheback.store")

P = ParamSpec("P")
R = TypeVar("R")


class StoreHealth:
    """Whether the store works, and if not since when and why (what stats and /health show)."""

    def __init__(self) -> None:
        self.fault: str | None = None
        self.since: float | None = None
        self.failures = 0

    def broken(self, reason: str) -> None:
        self.failures += 1
        if self.fault is None:
            self.since = time.time()
            log.error("store.broken", error=reason)
        self.fault = reason

    def healed(self) -> None:
        if self.fault is not None:
            log.warning("store.recovered", was=self.fault)
        self.fault = None
        self.since = None

    def describe(self) -> dict[str, Any]:
        return {"degraded": self.fault is not None, "reason": self.fault, "since": self.since}


class HasHealth(Protocol):
    @property
    def health(self) -> StoreHealth: ...


S = TypeVar("S", bound=HasHealth)


def store_errors(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Map SQLite and file-system failures to StoreError at the adapter boundary; a fault
    (corrupt pages, an unreadable or read-only file, an I/O error) also marks the store broken,
    so the engine reopens it. Busy and locked are transient and do not."""

    @functools.wraps(fn)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            reason = f"{fn.__name__}: {exc}"
            if is_fault(exc):
                self.health.broken(reason)
            kind = StoreCorrupt if is_corruption(exc) else StoreError
            raise kind(reason) from exc
        except OSError as exc:
            reason = f"{fn.__name__}: {exc}"
            self.health.broken(reason)
            raise StoreError(reason) from exc

    return wrapper
