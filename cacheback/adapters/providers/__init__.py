"""Provider codecs: OpenAI chat completions, OpenAI responses, Anthropic messages.

Pure translation, no I/O: request kwargs → cache key (``*_key``), response → cacheable or
not (``*_verdict``) and what to store (``*_answer``), streamed miss → stored answer
(``*StreamAccumulator``), cached answer → the SDK's own objects and streams
(``rebuild_*``, ``replay_*``).

The SDK-typed half (``rebuild_*``, ``replay_*``, ``*_events``, ``chat_chunks``, the
message stream managers) is imported lazily, so that installing only one SDK works.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._anthropic_wire import (
    MessageStreamAccumulator,
    message_answer,
    message_dict,
    message_event_dicts,
    message_text,
    message_verdict,
    messages_sse,
)
from ._common import (
    CachebackInfo,
    CachedAnswer,
    StreamAccumulator,
    Verdict,
    get,
    mark,
    reject,
    split_text,
)
from ._openai_wire import (
    ChatStreamAccumulator,
    ResponsesStreamAccumulator,
    chat_answer,
    chat_chunk_dicts,
    chat_completion_dict,
    chat_sse,
    chat_text,
    chat_verdict,
    response_dict,
    response_event_dicts,
    responses_answer,
    responses_sse,
    responses_text,
    responses_verdict,
)
from ._scope import (
    SCOPE_VERSION,
    RequestKey,
    anthropic_messages_key,
    openai_chat_key,
    openai_responses_key,
)
from ._stream_replay import ReplayByteStream, sse_response

if TYPE_CHECKING:
    from ._anthropic_codec import (
        AsyncHookedMessageStreamManager as AsyncHookedMessageStreamManager,
    )
    from ._anthropic_codec import HookedMessageStreamManager as HookedMessageStreamManager
    from ._anthropic_codec import message_events as message_events
    from ._anthropic_codec import rebuild_message as rebuild_message
    from ._anthropic_codec import replay_message_stream as replay_message_stream
    from ._anthropic_codec import (
        replay_message_stream_manager as replay_message_stream_manager,
    )
    from ._openai_codec import chat_chunks as chat_chunks
    from ._openai_codec import rebuild_chat_completion as rebuild_chat_completion
    from ._openai_codec import rebuild_response as rebuild_response
    from ._openai_codec import replay_chat_stream as replay_chat_stream
    from ._openai_codec import replay_chat_stream_manager as replay_chat_stream_manager
    from ._openai_codec import replay_responses_stream as replay_responses_stream
    from ._openai_codec import (
        replay_responses_stream_manager as replay_responses_stream_manager,
    )
    from ._openai_codec import response_events as response_events

_LAZY = {
    "AsyncHookedMessageStreamManager": "_anthropic_codec",
    "HookedMessageStreamManager": "_anthropic_codec",
    "message_events": "_anthropic_codec",
    "rebuild_message": "_anthropic_codec",
    "replay_message_stream": "_anthropic_codec",
    "replay_message_stream_manager": "_anthropic_codec",
    "chat_chunks": "_openai_codec",
    "rebuild_chat_completion": "_openai_codec",
    "rebuild_response": "_openai_codec",
    "replay_chat_stream": "_openai_codec",
    "replay_chat_stream_manager": "_openai_codec",
    "replay_responses_stream": "_openai_codec",
    "replay_responses_stream_manager": "_openai_codec",
    "response_events": "_openai_codec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def response_api(response: object) -> str | None:
    """``"chat"``, ``"responses"`` or ``"messages"`` for a response object or wire dict."""
    if get(response, "object") == "chat.completion":
        return "chat"
    if get(response, "object") == "response":
        return "responses"
    if get(response, "type") == "message":
        return "messages"
    return None


def is_cacheable_response(response: object) -> Verdict:
    """Whether any provider response (SDK object or wire dict) may be cached.

    Rejected: errors, truncation (``finish_reason`` length, ``max_tokens``, a Responses
    status other than completed), content filters and refusals, tool calls, empty text.
    """
    api = response_api(response)
    if api == "chat":
        return chat_verdict(response)
    if api == "responses":
        return responses_verdict(response)
    if api == "messages":
        return message_verdict(response)
    return reject("error" if get(response, "error") else "not a provider response")


def to_cached_answer(response: object) -> CachedAnswer | None:
    """The answer to store for ``response``, or ``None`` when it must not be cached."""
    if not is_cacheable_response(response):
        return None
    api = response_api(response)
    if api == "chat":
        return chat_answer(response)
    if api == "responses":
        return responses_answer(response)
    return message_answer(response)


__all__ = [
    "SCOPE_VERSION",
    "AsyncHookedMessageStreamManager",
    "CachebackInfo",
    "CachedAnswer",
    "ChatStreamAccumulator",
    "HookedMessageStreamManager",
    "MessageStreamAccumulator",
    "ReplayByteStream",
    "RequestKey",
    "ResponsesStreamAccumulator",
    "StreamAccumulator",
    "Verdict",
    "anthropic_messages_key",
    "chat_answer",
    "chat_chunk_dicts",
    "chat_chunks",
    "chat_completion_dict",
    "chat_sse",
    "chat_text",
    "chat_verdict",
    "is_cacheable_response",
    "mark",
    "message_answer",
    "message_dict",
    "message_event_dicts",
    "message_events",
    "message_text",
    "message_verdict",
    "messages_sse",
    "openai_chat_key",
    "openai_responses_key",
    "rebuild_chat_completion",
    "rebuild_message",
    "rebuild_response",
    "replay_chat_stream",
    "replay_chat_stream_manager",
    "replay_message_stream",
    "replay_message_stream_manager",
    "replay_responses_stream",
    "replay_responses_stream_manager",
    "response_api",
    "response_dict",
    "response_event_dicts",
    "response_events",
    "responses_answer",
    "responses_sse",
    "responses_text",
    "responses_verdict",
    "split_text",
    "sse_response",
    "to_cached_answer",
]
