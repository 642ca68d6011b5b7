"""The thin sync and async shells the SDK subclasses call into."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..._semantic_cache import AsyncSemanticCache, SemanticCache
from ...engine._portal import PortalRunner
from ._core import AsyncSDKHandler, ClientCache, Prepared, SyncSDKHandler
from ._specs import ApiSpec


class SyncShell:
    """Runs the async engine on a private event-loop thread (a blocking portal)."""

    def __init__(self, cache: ClientCache) -> None:
        self.cache = cache
        self._runner: PortalRunner | None = None
        self._lock = threading.Lock()
        self._view: SemanticCache | None = None

    def runner(self) -> PortalRunner:
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    runner = PortalRunner()
                    runner.on_close(self.cache.aclose)  # also at interpreter exit
                    self._runner = runner
        return self._runner

    def call(
        self,
        spec: ApiSpec,
        client: Any,
        kwargs: dict[str, Any],
        call: Callable[..., Any],
        *,
        direct: Callable[..., Any] | None = None,
    ) -> Any:
        """``call`` is the SDK's create(); ``direct`` (the stream helper) switches to helper mode."""
        prep = self.cache.prepare(spec, kwargs, helper=direct is not None)
        if prep.request is None:
            return self.cache.passthrough(_direct(prep, call, direct), prep)
        handler = SyncSDKHandler(self.cache, prep, client, call)
        job = self.runner().call(self.cache.run, prep, handler)
        if job is None:
            prep.reason = self.cache.unavailable or "cache error"
            return self.cache.passthrough(_direct(prep, call, direct), prep)
        return self.cache.deliver(job, prep, client)

    @property
    def view(self) -> SemanticCache:
        if self._view is None:
            runner = self.runner()
            runner.call(self.cache.ensure_open)
            self._view = SemanticCache._over(runner, AsyncSemanticCache(engine=self.cache.engine))
        return self._view

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()  # runs the close hook: flushes and closes the engine


class AsyncShell:
    """Runs the engine on the caller's own event loop (opened on first use)."""

    def __init__(self, cache: ClientCache) -> None:
        self.cache = cache
        self.view = AsyncSemanticCache(engine=cache.engine)

    async def call(
        self,
        spec: ApiSpec,
        client: Any,
        kwargs: dict[str, Any],
        call: Callable[..., Awaitable[Any]],
        *,
        direct: Callable[..., Any] | None = None,
    ) -> Any:
        prep = self.cache.prepare(spec, kwargs, helper=direct is not None)
        if prep.request is None:
            return self.cache.passthrough(await _adirect(prep, call, direct), prep)
        job = await self.cache.run(prep, AsyncSDKHandler(self.cache, prep, client, call))
        if job is None:
            prep.reason = self.cache.unavailable or "cache error"
            return self.cache.passthrough(await _adirect(prep, call, direct), prep)
        return self.cache.deliver(job, prep, client)

    async def aclose(self) -> None:
        await self.cache.aclose()


def _direct(prep: Prepared, call: Callable[..., Any], direct: Callable[..., Any] | None) -> Any:
    if direct is None:
        return call(**prep.kwargs)
    kwargs = dict(prep.kwargs)
    kwargs.pop("stream", None)
    return direct(**kwargs)


async def _adirect(
    prep: Prepared, call: Callable[..., Awaitable[Any]], direct: Callable[..., Any] | None
) -> Any:
    if direct is None:
        return await call(**prep.kwargs)
    kwargs = dict(prep.kwargs)
    kwargs.pop("stream", None)
    return direct(**kwargs)  # the SDK's async stream() returns its manager synchronously
