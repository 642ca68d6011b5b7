"""CachedAnthropic and AsyncCachedAnthropic: ``anthropic.Anthropic`` / ``AsyncAnthropic``
with the cache in front of ``messages.create`` (streaming too) and ``messages.stream``.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import Any, cast

import anthropic
from anthropic.resources.messages import AsyncMessages, Messages

from ..._semantic_cache import AsyncSemanticCache, SemanticCache
from ._options import build_cache, split_cache_args
from ._shells import AsyncShell, SyncShell
from ._specs import ANTHROPIC_MESSAGES


class _Messages(Messages):
    def create(self, **kwargs: Any) -> Any:
        client = cast("CachedAnthropic", self._client)
        return client._cacheback.call(ANTHROPIC_MESSAGES, client, kwargs, super().create)

    def stream(self, **kwargs: Any) -> Any:
        client = cast("CachedAnthropic", self._client)
        return client._cacheback.call(
            ANTHROPIC_MESSAGES, client, kwargs, super().create, direct=super().stream
        )


class _AsyncMessages(AsyncMessages):
    async def create(self, **kwargs: Any) -> Any:
        client = cast("AsyncCachedAnthropic", self._client)
        return await client._cacheback.call(ANTHROPIC_MESSAGES, client, kwargs, super().create)

    def stream(self, **kwargs: Any) -> Any:
        # The SDK returns its manager synchronously and requests on entry; so do we.
        client = cast("AsyncCachedAnthropic", self._client)
        return _AsyncLookupStreamManager(client, kwargs, super().create, super().stream)


class _AsyncLookupStreamManager:
    """``async with client.messages.stream(...)``: looks up on entry, then replays or streams."""

    def __init__(
        self, client: AsyncCachedAnthropic, kwargs: dict[str, Any], create: Any, direct: Any
    ) -> None:
        self._client = client
        self._kwargs = kwargs
        self._create = create
        self._direct = direct
        self._inner: Any = None

    async def __aenter__(self) -> Any:
        self._inner = await self._client._cacheback.call(
            ANTHROPIC_MESSAGES, self._client, self._kwargs, self._create, direct=self._direct
        )
        return await self._inner.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._inner is not None:
            await self._inner.__aexit__(exc_type, exc, tb)


class CachedAnthropic(anthropic.Anthropic):
    """Drop-in ``anthropic.Anthropic`` with the semantic cache in front of messages."""

    _cacheback: SyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = SyncShell(build_cache(**cache_args))

    @cached_property
    def messages(self) -> Messages:
        return _Messages(self)

    @property
    def cache(self) -> SemanticCache:
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> CachedAnthropic:
        new: CachedAnthropic = super().copy(**kwargs)
        new._cacheback = self._cacheback
        return new

    with_options = copy

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._cacheback.close()


class AsyncCachedAnthropic(anthropic.AsyncAnthropic):
    """Drop-in ``anthropic.AsyncAnthropic`` with the semantic cache."""

    _cacheback: AsyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = AsyncShell(build_cache(**cache_args))

    @cached_property
    def messages(self) -> AsyncMessages:
        return _AsyncMessages(self)

    @property
    def cache(self) -> AsyncSemanticCache:
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> AsyncCachedAnthropic:
        new: AsyncCachedAnthropic = super().copy(**kwargs)
        new._cacheback = self._cacheback
        return new

    with_options = copy

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self._cacheback.aclose()
