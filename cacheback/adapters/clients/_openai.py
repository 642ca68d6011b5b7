"""CachedOpenAI and AsyncCachedOpenAI: ``openai.OpenAI`` / ``AsyncOpenAI`` with a cache.

Only ``chat.completions.create`` and ``responses.create`` are cached; every other SDK
feature is the SDK's own, unchanged (the classes are subclasses).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

import openai
from openai.resources.chat import AsyncChat, Chat
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import AsyncResponses, Responses

from ..._semantic_cache import AsyncSemanticCache, SemanticCache
from ._options import build_cache, split_cache_args
from ._shells import AsyncShell, SyncShell
from ._specs import OPENAI_CHAT, OPENAI_RESPONSES


class _Completions(Completions):
    def create(self, **kwargs: Any) -> Any:
        client = cast("CachedOpenAI", self._client)
        return client._cacheback.call(OPENAI_CHAT, client, kwargs, super().create)


class _AsyncCompletions(AsyncCompletions):
    async def create(self, **kwargs: Any) -> Any:
        client = cast("AsyncCachedOpenAI", self._client)
        return await client._cacheback.call(OPENAI_CHAT, client, kwargs, super().create)


class _Chat(Chat):
    @cached_property
    def completions(self) -> Completions:
        return _Completions(self._client)


class _AsyncChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _AsyncCompletions(self._client)


class _Responses(Responses):
    def create(self, **kwargs: Any) -> Any:
        client = cast("CachedOpenAI", self._client)
        return client._cacheback.call(OPENAI_RESPONSES, client, kwargs, super().create)


class _AsyncResponses(AsyncResponses):
    async def create(self, **kwargs: Any) -> Any:
        client = cast("AsyncCachedOpenAI", self._client)
        return await client._cacheback.call(OPENAI_RESPONSES, client, kwargs, super().create)


class CachedOpenAI(openai.OpenAI):
    """Drop-in ``openai.OpenAI`` with the semantic cache in front of chat and responses."""

    _cacheback: SyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = SyncShell(build_cache(**cache_args))

    @cached_property
    def chat(self) -> Chat:
        return _Chat(self)

    @cached_property
    def responses(self) -> Responses:
        return _Responses(self)

    @property
    def cache(self) -> SemanticCache:
        """Stats and management: ``client.cache.stats``, ``client.cache.negative.add(...)``."""
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> CachedOpenAI:
        # Copies (with_options) share this client's cache instead of opening another.
        new: CachedOpenAI = super().copy(**kwargs)
        new._cacheback = self._cacheback
        return new

    with_options = copy

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._cacheback.close()


class AsyncCachedOpenAI(openai.AsyncOpenAI):
    """Drop-in ``openai.AsyncOpenAI`` with the semantic cache (engine on the caller's loop)."""

    _cacheback: AsyncShell

    def __init__(self, **kwargs: Any) -> None:
        cache_args = split_cache_args(kwargs)
        super().__init__(**kwargs)
        self._cacheback = AsyncShell(build_cache(**cache_args))

    @cached_property
    def chat(self) -> AsyncChat:
        return _AsyncChat(self)

    @cached_property
    def responses(self) -> AsyncResponses:
        return _AsyncResponses(self)

    @property
    def cache(self) -> AsyncSemanticCache:
        return self._cacheback.view

    def copy(self, **kwargs: Any) -> AsyncCachedOpenAI:
        new: AsyncCachedOpenAI = super().copy(**kwargs)
        new._cacheback = self._cacheback
        return new

    with_options = copy

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self._cacheback.aclose()
