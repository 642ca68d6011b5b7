"""The store's health as the engine sees it, and getting a broken store back.

A store that cannot be opened, or breaks at run time (damaged pages, an unusable
directory), never fails a call: requests pass through to the provider while the engine
reopens the store with backoff (the embedded store moves a damaged database aside, never
deleting it, and starts a fresh one). Stats and ``/health`` say the cache is degraded, and
why, until it is back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from cacheback._logging import get_logger

from ..core._errors import ConfigError
from ..core._store_ports import Store

log = get_logger("cacheback.engine")

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0


def retry_delay(failures: int) -> float:
    """Seconds before the next reopen after ``failures`` failed attempts (1, 2, 4 … 60)."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2.0 ** max(0, failures - 1))


def store_fault(store: Store | None) -> str | None:
    """Why the store says it is broken (None: it does not)."""
    if store is None:
        return None
    try:
        health = store.describe().get("health") or {}
    except Exception as exc:  # describe() is the store's own code: it must not break stats
        return f"describe failed: {exc!r}"
    return str(health.get("reason") or "degraded") if health.get("degraded") else None


class StoreRecovery:
    """Tracks whether the store works and reopens it with backoff when it does not."""

    def __init__(self, on_recovered: Callable[[], Awaitable[None]]) -> None:
        self._on_recovered = on_recovered
        self.unopened: str | None = None  # the store never opened in this engine: why
        self.failures = 0
        self.since: float | None = None
        self._next_try = 0.0
        self.recoveries = 0

    def open_failed(self, exc: BaseException) -> None:
        reason = f"the store could not be opened: {exc}"
        if self.unopened is None:
            self.since = time.time()
            log.error(
                "CACHE DISABLED: the store could not be opened; requests pass through to the "
                "provider while it is retried",
                error=str(exc),
            )
        self.unopened = reason
        self.failures += 1
        self._next_try = time.monotonic() + retry_delay(self.failures)

    def status(self, store: Store | None) -> dict[str, Any]:
        reason = self.unopened or store_fault(store)
        if reason is None:
            return {"status": "ok", "reason": None, "recoveries": self.recoveries}
        return {
            "status": "degraded",
            "reason": reason,
            "since": self.since,
            "retry_in_s": round(max(0.0, self._next_try - time.monotonic()), 3),
            "recoveries": self.recoveries,
        }

    def usable(self, store: Store | None) -> bool:
        return self.unopened is None and store_fault(store) is None

    async def maybe_reopen(self, store: Store | None) -> None:
        """Reopen a broken store when its backoff has passed (called about once a second)."""
        if store is None or self.usable(store) or time.monotonic() < self._next_try:
            return
        if self.since is None:
            self.since = time.time()
            self.failures = 0
        log.warning("store broken; reopening", reason=self.unopened or store_fault(store))
        with anyio.CancelScope(shield=True):
            try:
                await store.close()
            except Exception as exc:
                log.info("closing the broken store failed", error=repr(exc))
            try:
                await store.open()
                await self._on_recovered()
            except ConfigError:
                raise
            except Exception as exc:
                self.failures += 1
                self.unopened = f"the store could not be reopened: {exc}"
                self._next_try = time.monotonic() + retry_delay(self.failures)
                log.warning("store reopen failed", error=str(exc), retry_in_s=retry_delay(self.failures))
                return
        log.warning("store recovered; the cache is back", after_s=round(time.time() - (self.since or 0), 3))
        self.unopened = None
        self.since = None
        self.failures = 0
        self.recoveries += 1
