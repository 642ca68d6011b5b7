"""CachedAnthropic and AsyncCachedAnthropic: ``anthropic.Anthropic`` / ``AsyncAnthropic``
with the cache in front of ``messages.create`` (streaming too) and ``messages.stream``.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import Any, cast

import anthropic
from anthropic.lib.streaming import AsyncMessageStream, AsyncMessageStreamManager
from anthropic.resources.messages import AsyncMessages, Messages

from ..providers import ANTHROPIC_MESSAGES
from ._base import AsyncCacheMixin, SyncCacheMixin


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


class _AsyncLookupStreamManager(AsyncMessageStreamManager[Any]):
    """``async with client.messages.stream(...)``: looks up on entry, then replays or streams.

    A subclass of the SDK's manager so that ``isinstance`` checks hold, as for the sync
    client. The base's ``__init__`` is not called: it wants the request awaitable up front,
    and the lookup that decides between a replay and a real request can only run on entry
    (on the caller's loop). Both methods the base defines are overridden."""

    def __init__(
        self, client: AsyncCachedAnthropic, kwargs: dict[str, Any], create: Any, direct: Any
    ) -> None:
        self._client = client
        self._kwargs = kwargs
        self._create = create
        self._direct = direct
        self._inner: Any = None

    async def __aenter__(self) -> AsyncMessageStream[Any]:
        self._inner = await self._client._cacheback.call(
            ANTHROPIC_MESSAGES, self._client, self._kwargs, self._create, direct=self._direct
        )
        stream: AsyncMessageStream[Any] = await self._inner.__aenter__()
        return stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._inner is not None:
            await self._inner.__aexit__(exc_type, exc, tb)


class CachedAnthropic(SyncCacheMixin, anthropic.Anthropic):
    """Drop-in ``anthropic.Anthropic`` with the semantic cache in front of messages."""

    @cached_property
    def messages(self) -> Messages:
        return _Messages(self)


class AsyncCachedAnthropic(AsyncCacheMixin, anthropic.AsyncAnthropic):
    """Drop-in ``anthropic.AsyncAnthropic`` with the semantic cache."""

    @cached_property
    def messages(self) -> AsyncMessages:
        return _AsyncMessages(self)
