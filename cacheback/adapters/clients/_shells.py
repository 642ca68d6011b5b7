"""The thin sync and async shells the SDK subclasses call into.

A shell is shared by a client and its copies (``with_options``/``copy``), like the SDK's
HTTP client, and it lives as long as the last of them: closing any of them closes it, and
a sync shell nobody refers to any more closes itself (see ``SyncShell.runner``).

A closed shell sends every call straight to the SDK's own method, which raises as a
closed plain client does; the cache is never reopened behind the caller's back.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from ..._portal import PortalRunner
from ..._semantic_cache import AsyncSemanticCache, SemanticCache
from ...core._errors import EngineClosed
from ...core._types import Tier
from ..providers import Codec
from ..providers._media import OFFLOAD_CHARS, inline_media_chars
from ._core import CONTROL_KWARG, ClientCache, Prepared

_CLOSED = "the client is closed, and its cache with it"

_SYNC_SHELLS: weakref.WeakSet[SyncShell] = weakref.WeakSet()
_FORK_ORPHANS: list[ClientCache] = []  # a forked child's copies of its parent's caches


class SyncShell:
    """Runs the async engine on a private event-loop thread (a blocking portal)."""

    def __init__(self, cache: ClientCache) -> None:
        self.cache = cache
        self._runner: PortalRunner | None = None
        self._lock = threading.Lock()
        self._view: SemanticCache | None = None
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # In a forked worker an answer is written before its call returns: pools end their
        # workers with SIGTERM (Pool.__exit__), which leaves no time for a write-behind.
        self._write_through = False
        _SYNC_SHELLS.add(self)

    def runner(self) -> PortalRunner:
        runner = self._runner
        if runner is None:
            with self._lock:
                if self._closed:
                    raise EngineClosed(_CLOSED)
                if self._runner is None:
                    new = PortalRunner()
                    new.on_close(self.cache.aclose)  # also at interpreter exit
                    # Once the last client sharing this shell is garbage, close the runner
                    # (flushing, as close() does), or its threads and files stay until exit.
                    # The callback holds the runner, never the shell; at exit the atexit
                    # hook closes what is still open, in order.
                    self._finalizer = weakref.finalize(self, new.close_soon)
                    self._finalizer.atexit = False
                    self._runner = new
                runner = self._runner
        return runner

    def call(
        self,
        spec: Codec,
        client: Any,
        kwargs: dict[str, Any],
        call: Callable[..., Any],
        *,
        direct: Callable[..., Any] | None = None,
    ) -> Any:
        """``call`` is the SDK's create(); ``direct`` (the stream helper) switches to helper mode."""
        if self._closed:
            return _uncached(kwargs, call, direct)
        prep = self.cache.prepare(spec, kwargs, helper=direct is not None)
        if prep.request is None:
            return self.cache.passthrough(_direct(prep, call, direct), prep)
        upstream = self.cache.upstream_call(prep, call, blocking=True)
        try:  # a repeat from memory is answered on this thread, without the portal hop
            job = self.cache.answer_from_memory(prep, upstream) or self.runner().call(
                self.cache.run, prep, upstream
            )
        except EngineClosed:  # closed by another thread meanwhile
            return _direct(prep, call, direct)
        if job is None:
            prep.reason = self.cache.unavailable or "cache error"
            return self.cache.passthrough(_direct(prep, call, direct), prep)
        response = self.cache.deliver(job, prep, client)
        if self._write_through and job.outcome is not None and job.outcome.tier is Tier.UPSTREAM:
            self.runner().call(self.cache.engine.flush)
        # The engine may keep a finished job a while (a stage task's last one): it must not
        # keep the response (a stream holds the SDK client), nor the call (its create()).
        job.response = job.call = None
        return response

    @property
    def view(self) -> SemanticCache:
        if self._closed:
            raise EngineClosed(_CLOSED)
        view = self._view
        if view is None:
            runner = self.runner()
            runner.call(self.cache.ensure_open)
            view = self._view = SemanticCache._over(runner, AsyncSemanticCache(engine=self.cache.engine))
        return view

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runner, self._runner = self._runner, None
            finalizer, self._finalizer = self._finalizer, None
            self._view = None
        if finalizer is not None:
            finalizer.detach()
        if runner is not None:
            runner.close()  # runs the close hook: flushes and closes the engine

    def _forked(self) -> None:
        """In a forked child (one thread, nothing else running): the parent's portal thread
        and engine did not come along, and its SQLite connections are not this process's.
        Forget them, never closing them, and open an engine of our own on first use."""
        self._lock = threading.Lock()  # a parent thread may have held it at the fork
        self._write_through = True
        if self._runner is None:
            return  # nothing opened yet: the cache can be used as it is
        if self._finalizer is not None:
            self._finalizer.detach()
        self._runner, self._finalizer, self._view = None, None, None
        old = self.cache
        # Keep the parent's cache, never use it: its SQLite connections were already closed at
        # the fork (storage/_sqlite_fork), but the rest (aiosqlite connections whose threads
        # did not come along, an onnxruntime session) must not be freed in this process.
        _FORK_ORPHANS.append(old)
        self.cache = ClientCache(old.settings, old.options, **old.engine_args)


def _forked_child() -> None:
    for shell in list(_SYNC_SHELLS):
        shell._forked()


os.register_at_fork(after_in_child=_forked_child)


class AsyncShell:
    """Runs the engine on the caller's own event loop (opened on first use)."""

    def __init__(self, cache: ClientCache) -> None:
        self.cache = cache
        self._view = AsyncSemanticCache(engine=cache.engine)
        self._closed = False

    @property
    def view(self) -> AsyncSemanticCache:
        if self._closed:
            raise EngineClosed(_CLOSED)
        return self._view

    async def call(
        self,
        spec: Codec,
        client: Any,
        kwargs: dict[str, Any],
        call: Callable[..., Awaitable[Any]],
        *,
        direct: Callable[..., Any] | None = None,
    ) -> Any:
        if self._closed:
            return await _auncached(kwargs, call, direct)
        if inline_media_chars(kwargs) > OFFLOAD_CHARS:  # decoding and hashing it takes a while
            prepare = partial(self.cache.prepare, spec, kwargs, helper=direct is not None)
            prep = await anyio.to_thread.run_sync(prepare)
        else:
            prep = self.cache.prepare(spec, kwargs, helper=direct is not None)
        if prep.request is None:
            return self.cache.passthrough(await _adirect(prep, call, direct), prep)
        job = await self.cache.run(prep, self.cache.upstream_call(prep, call, blocking=False))
        if job is None:
            prep.reason = self.cache.unavailable or "cache error"
            return self.cache.passthrough(await _adirect(prep, call, direct), prep)
        try:
            return self.cache.deliver(job, prep, client)
        finally:
            job.response = job.call = None  # see SyncShell.call

    async def aclose(self) -> None:
        self._closed = True
        await self.cache.aclose()


def _uncached(kwargs: dict[str, Any], call: Callable[..., Any], direct: Callable[..., Any] | None) -> Any:
    """A call on a closed client: the SDK's own method answers (and raises, as it does
    for a closed plain client); only our control argument is taken out first."""
    kwargs = {k: v for k, v in kwargs.items() if k != CONTROL_KWARG}
    return call(**kwargs) if direct is None else direct(**kwargs)


async def _auncached(
    kwargs: dict[str, Any], call: Callable[..., Awaitable[Any]], direct: Callable[..., Any] | None
) -> Any:
    kwargs = {k: v for k, v in kwargs.items() if k != CONTROL_KWARG}
    return await call(**kwargs) if direct is None else direct(**kwargs)


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
