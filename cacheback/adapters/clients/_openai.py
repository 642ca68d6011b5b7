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

from ..providers import OPENAI_CHAT, OPENAI_RESPONSES
from ._base import AsyncCacheMixin, SyncCacheMixin


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


class CachedOpenAI(SyncCacheMixin, openai.OpenAI):
    """Drop-in ``openai.OpenAI`` with the semantic cache in front of chat and responses."""

    @cached_property
    def chat(self) -> Chat:
        return _Chat(self)

    @cached_property
    def responses(self) -> Responses:
        return _Responses(self)


class AsyncCachedOpenAI(AsyncCacheMixin, openai.AsyncOpenAI):
    """Drop-in ``openai.AsyncOpenAI`` with the semantic cache (engine on the caller's loop)."""

    @cached_property
    def chat(self) -> AsyncChat:
        return _AsyncChat(self)

    @cached_property
    def responses(self) -> AsyncResponses:
        return _AsyncResponses(self)
