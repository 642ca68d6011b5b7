"""The proxy process's garbage collector: what startup built is frozen out of full collections.

The proxy's process is its own (``cacheback-proxy``), so unlike the library it may change
the interpreter's collector (see ``core/_gc``): once the engine is open (model, store,
guard tables loaded) everything alive is frozen, and once more after the first
:data:`REFREEZE_AFTER` requests, which import and build what only a request does (lazy
imports, connection pools, the first scopes). Full collections then walk only what was
built since: the in-flight requests and the caches' growth. Each freeze runs one full
collection first (that once, tens of milliseconds).
"""

from __future__ import annotations

from ...core._gc import freeze_gc

# Requests after which the second (last) freeze runs.
REFREEZE_AFTER = 200


class ProxyGc:
    """Freezes at startup and after the first requests, if ``enabled``."""

    __slots__ = ("enabled", "freezes", "frozen", "served")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.served = 0
        self.freezes = 0
        self.frozen = 0  # objects frozen after the last freeze (0: none yet)

    def started(self) -> None:
        """The engine is open: freeze what startup built."""
        if self.enabled:
            self._freeze()

    def request_done(self) -> None:
        """One request answered; the :data:`REFREEZE_AFTER`-th freezes once more."""
        if not self.enabled or self.served > REFREEZE_AFTER:
            return
        self.served += 1
        if self.served == REFREEZE_AFTER:
            self._freeze()

    def _freeze(self) -> None:
        self.frozen = freeze_gc()
        self.freezes += 1
