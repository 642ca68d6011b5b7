"""What the four drop-in clients share: cache arguments, ``.cache``, copies, closing.

Mixed in before the SDK's client class, so ``super()`` is the SDK's own method.
"""

from __future__ import annotations

from typing import Any

from ..._semantic_cache import AsyncSemanticCache, SemanticCache
from ...core._early import PARKED
from ._options import build_cache, split_cache_args
from ._shells import AsyncShell, SyncShell


class SyncCacheMixin:
    _cacheback: SyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = SyncShell(build_cache(**cache_args))

    @property
    def cache(self) -> SemanticCache:
        """Stats and management: ``client.cache.stats``, ``client.cache.negative.add(...)``."""
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> Any:
        # Copies (with_options) share this client's cache instead of opening another.
        new = super().copy(**kwargs)  # type: ignore[misc]
        new._cacheback = self._cacheback
        return new

    with_options = copy

    def _prepare_request(self, request: Any) -> None:
        # The SDK's last hook before sending: a call started early waits here (core/_early.py).
        super()._prepare_request(request)  # type: ignore[misc]
        gate = PARKED.get()
        if gate is not None:
            gate.wait_blocking()

    def close(self) -> None:
        """Close the SDK's HTTP client and the cache, for good (see _shells.py). Copies made
        by ``with_options`` share both: closing any of them closes them for all."""
        # The cache first: its close gives calls in flight their grace, and they need
        # the HTTP client for it.
        try:
            self._cacheback.close()
        finally:
            super().close()  # type: ignore[misc]


class AsyncCacheMixin:
    _cacheback: AsyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = AsyncShell(build_cache(**cache_args))

    @property
    def cache(self) -> AsyncSemanticCache:
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> Any:
        new = super().copy(**kwargs)  # type: ignore[misc]
        new._cacheback = self._cacheback
        return new

    with_options = copy

    async def _prepare_request(self, request: Any) -> None:
        # The SDK's last hook before sending: a call started early waits here (core/_early.py).
        await super()._prepare_request(request)  # type: ignore[misc]
        gate = PARKED.get()
        if gate is not None:
            await gate.wait()

    async def close(self) -> None:
        """Close the SDK's HTTP client and the cache, for good; copies share both."""
        try:
            await self._cacheback.aclose()  # first: calls in flight get their grace
        finally:
            await super().close()  # type: ignore[misc]
