"""Provider codecs: OpenAI chat completions, OpenAI responses, Anthropic messages.

One ``Codec`` per API (``OPENAI_CHAT``, ``OPENAI_RESPONSES``, ``ANTHROPIC_MESSAGES``, each in
its own module), used by the SDK clients and the proxy alike. Pure translation, no I/O:
request kwargs or body → cache key (``key``), response → answer text, finish reason,
usage and whether it may be cached (``verdict``, ``answer``), streamed miss → stored
answer (``accumulator``), cached answer → JSON (``render``, ``events``, ``sse``) or the
SDK's own objects and streams (``rebuild``, ``replay``).

The SDK-typed half (``rebuild_*``, ``replay_*``, ``*_events``, ``chat_chunks``, the
message stream managers) is imported lazily, so that installing only one SDK works.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._codec import Codec
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
from ._scope import SCOPE_VERSION, RequestKey
from ._stream_replay import ReplayByteStream, sse_response
from .anthropic_messages import CODEC as ANTHROPIC_MESSAGES
from .anthropic_messages import (
    MessageStreamAccumulator,
    anthropic_messages_key,
    message_answer,
    message_dict,
    message_event_dicts,
    message_text,
    message_verdict,
)
from .openai_chat import CODEC as OPENAI_CHAT
from .openai_chat import (
    ChatStreamAccumulator,
    chat_answer,
    chat_chunk_dicts,
    chat_completion_dict,
    chat_text,
    chat_verdict,
    openai_chat_key,
)
from .openai_responses import CODEC as OPENAI_RESPONSES
from .openai_responses import (
    ResponsesStreamAccumulator,
    openai_responses_key,
    response_dict,
    response_event_dicts,
    responses_answer,
    responses_text,
    responses_verdict,
)

if TYPE_CHECKING:
    from ._anthropic_sdk import (
        AsyncHookedMessageStreamManager as AsyncHookedMessageStreamManager,
    )
    from ._anthropic_sdk import HookedMessageStreamManager as HookedMessageStreamManager
    from ._anthropic_sdk import message_events as message_events
    from ._anthropic_sdk import rebuild_message as rebuild_message
    from ._anthropic_sdk import replay_message_stream as replay_message_stream
    from ._anthropic_sdk import (
        replay_message_stream_manager as replay_message_stream_manager,
    )
    from ._openai_sdk import chat_chunks as chat_chunks
    from ._openai_sdk import rebuild_chat_completion as rebuild_chat_completion
    from ._openai_sdk import rebuild_response as rebuild_response
    from ._openai_sdk import replay_chat_stream as replay_chat_stream
    from ._openai_sdk import replay_chat_stream_manager as replay_chat_stream_manager
    from ._openai_sdk import replay_responses_stream as replay_responses_stream
    from ._openai_sdk import (
        replay_responses_stream_manager as replay_responses_stream_manager,
    )
    from ._openai_sdk import response_events as response_events

_LAZY = {
    "AsyncHookedMessageStreamManager": "_anthropic_sdk",
    "HookedMessageStreamManager": "_anthropic_sdk",
    "message_events": "_anthropic_sdk",
    "rebuild_message": "_anthropic_sdk",
    "replay_message_stream": "_anthropic_sdk",
    "replay_message_stream_manager": "_anthropic_sdk",
    "chat_chunks": "_openai_sdk",
    "rebuild_chat_completion": "_openai_sdk",
    "rebuild_response": "_openai_sdk",
    "replay_chat_stream": "_openai_sdk",
    "replay_chat_stream_manager": "_openai_sdk",
    "replay_responses_stream": "_openai_sdk",
    "replay_responses_stream_manager": "_openai_sdk",
    "response_events": "_openai_sdk",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def codec_of(response: object) -> Codec | None:
    """The codec of a response object or wire dict, by its ``object``/``type`` field."""
    if get(response, "object") == "chat.completion":
        return OPENAI_CHAT
    if get(response, "object") == "response":
        return OPENAI_RESPONSES
    if get(response, "type") == "message":
        return ANTHROPIC_MESSAGES
    return None


def response_api(response: object) -> str | None:
    """``"chat"``, ``"responses"`` or ``"messages"`` for a response object or wire dict."""
    codec = codec_of(response)
    return codec.name if codec is not None else None


def is_cacheable_response(response: object) -> Verdict:
    """Whether any provider response (SDK object or wire dict) may be cached.

    Rejected: errors, truncation (``finish_reason`` length, ``max_tokens``, a Responses
    status other than completed), content filters and refusals, tool calls, empty text.
    """
    codec = codec_of(response)
    if codec is None:
        return reject("error" if get(response, "error") else "not a provider response")
    return codec.verdict(response)


def to_cached_answer(response: object) -> CachedAnswer | None:
    """The answer to store for ``response``, or ``None`` when it must not be cached."""
    codec = codec_of(response)
    return codec.answer(response) if codec is not None else None


__all__ = [
    "ANTHROPIC_MESSAGES",
    "OPENAI_CHAT",
    "OPENAI_RESPONSES",
    "SCOPE_VERSION",
    "AsyncHookedMessageStreamManager",
    "CachebackInfo",
    "CachedAnswer",
    "ChatStreamAccumulator",
    "Codec",
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
    "chat_text",
    "chat_verdict",
    "codec_of",
    "is_cacheable_response",
    "mark",
    "message_answer",
    "message_dict",
    "message_event_dicts",
    "message_events",
    "message_text",
    "message_verdict",
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
    "responses_text",
    "responses_verdict",
    "split_text",
    "sse_response",
    "to_cached_answer",
]
