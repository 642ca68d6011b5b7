"""OpenAI SDK types for cache hits: rebuilt responses, typed stream events, SDK streams.

Needs the ``openai`` SDK (the ``openai`` extra). The SDK-free logic lives in
``_openai_wire``; this module only turns its dicts into the SDK's own classes, the way
the SDK does for an HTTP response (``construct``: no validation, unknown fields kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast, overload

from openai import AsyncOpenAI, AsyncStream, Omit, OpenAI, Stream, omit
from openai.lib.streaming.chat import AsyncChatCompletionStreamManager, ChatCompletionStreamManager
from openai.lib.streaming.responses import AsyncResponseStreamManager, ResponseStreamManager
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from ._common import discriminator_table, no_request
from ._openai_wire import (
    chat_chunk_dicts,
    chat_completion_dict,
    chat_sse,
    response_dict,
    response_event_dicts,
    responses_sse,
)
from ._stream_replay import Ready, join_url, sse_response


def rebuild_chat_completion(
    text: str,
    payload: bytes | None = None,
    *,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    keep_ids: bool = False,
) -> ChatCompletion:
    """A ``ChatCompletion`` serving ``text`` (from its stored payload when it has one;
    ``keep_ids``: as the provider sent it, id included). ``_request_id`` is None."""
    data = chat_completion_dict(text, payload, model=model, request=request, keep_ids=keep_ids)
    return no_request(ChatCompletion.construct(**data))


def chat_chunks(
    completion: ChatCompletion | Mapping[str, Any],
    *,
    include_usage: bool = False,
    chunk_chars: int = 24,
) -> list[ChatCompletionChunk]:
    """The ``ChatCompletionChunk`` objects a live stream of ``completion`` would yield."""
    return [
        ChatCompletionChunk.construct(**c)
        for c in chat_chunk_dicts(completion, include_usage=include_usage, chunk_chars=chunk_chars)
    ]


@overload
def replay_chat_stream(
    client: OpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    include_usage: bool = ...,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> Stream[ChatCompletionChunk]: ...


@overload
def replay_chat_stream(
    client: AsyncOpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    include_usage: bool = ...,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> AsyncStream[ChatCompletionChunk]: ...


def replay_chat_stream(
    client: OpenAI | AsyncOpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    include_usage: bool = False,
    chunk_chars: int = 24,
    headers: Mapping[str, str] | None = None,
) -> Stream[ChatCompletionChunk] | AsyncStream[ChatCompletionChunk]:
    """The SDK's own stream replaying ``completion``, parsed by the SDK from SSE bytes."""
    chunks = chat_sse(chat_chunk_dicts(completion, include_usage=include_usage, chunk_chars=chunk_chars))
    response = sse_response(chunks, url=join_url(client.base_url, "chat/completions"), headers=headers)
    # The same construction as the SDK's after an HTTP call (options=None: legacy mode,
    # which is what chat completions use).
    if isinstance(client, AsyncOpenAI):
        return no_request(AsyncStream(cast_to=ChatCompletionChunk, response=response, client=client))
    return no_request(Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def rebuild_response(
    text: str,
    payload: bytes | None = None,
    *,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    keep_ids: bool = False,
) -> Response:
    """A Responses-API ``Response`` serving ``text`` (see ``rebuild_chat_completion``)."""
    data = response_dict(text, payload, model=model, request=request, keep_ids=keep_ids)
    return no_request(Response.construct(**data))


_RESPONSE_EVENTS = discriminator_table(ResponseStreamEvent)


def response_events(
    response: Response | Mapping[str, Any], *, chunk_chars: int = 24
) -> list[ResponseStreamEvent]:
    """The typed events a live stream of ``response`` would yield."""
    return [
        cast(ResponseStreamEvent, _RESPONSE_EVENTS[e["type"]].construct(**e))
        for e in response_event_dicts(response, chunk_chars=chunk_chars)
    ]


@overload
def replay_responses_stream(
    client: OpenAI,
    response: Response | Mapping[str, Any],
    *,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> Stream[ResponseStreamEvent]: ...


@overload
def replay_responses_stream(
    client: AsyncOpenAI,
    response: Response | Mapping[str, Any],
    *,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> AsyncStream[ResponseStreamEvent]: ...


def replay_responses_stream(
    client: OpenAI | AsyncOpenAI,
    response: Response | Mapping[str, Any],
    *,
    chunk_chars: int = 24,
    headers: Mapping[str, str] | None = None,
) -> Stream[ResponseStreamEvent] | AsyncStream[ResponseStreamEvent]:
    """The SDK's own stream of Responses-API events replaying ``response``."""
    chunks = responses_sse(response_event_dicts(response, chunk_chars=chunk_chars))
    http = sse_response(chunks, url=join_url(client.base_url, "responses"), headers=headers)
    # cast_to is the discriminated union itself, as the SDK extracts it from
    # Stream[ResponseStreamEvent]; mypy cannot express a union as a type[...].
    event_type = cast(Any, ResponseStreamEvent)
    if isinstance(client, AsyncOpenAI):
        return no_request(AsyncStream[ResponseStreamEvent](cast_to=event_type, response=http, client=client))
    return no_request(Stream[ResponseStreamEvent](cast_to=event_type, response=http, client=client))


# --- the stream helpers: chat.completions.stream() and responses.stream() ----------------


@overload
def replay_chat_stream_manager(
    client: OpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    response_format: Any = ...,
    input_tools: Iterable[Any] | Omit = ...,
    chunk_chars: int = ...,
) -> ChatCompletionStreamManager[Any]: ...


@overload
def replay_chat_stream_manager(
    client: AsyncOpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    response_format: Any = ...,
    input_tools: Iterable[Any] | Omit = ...,
    chunk_chars: int = ...,
) -> AsyncChatCompletionStreamManager[Any]: ...


def replay_chat_stream_manager(
    client: OpenAI | AsyncOpenAI,
    completion: ChatCompletion | Mapping[str, Any],
    *,
    response_format: Any = omit,
    input_tools: Iterable[Any] | Omit = omit,
    chunk_chars: int = 24,
) -> ChatCompletionStreamManager[Any] | AsyncChatCompletionStreamManager[Any]:
    """What ``client.chat.completions.stream(...)`` returns, replaying ``completion``
    (pass the caller's ``response_format`` and ``tools`` for parsed output)."""
    if isinstance(client, AsyncOpenAI):
        raw = replay_chat_stream(client, completion, include_usage=False, chunk_chars=chunk_chars)
        return AsyncChatCompletionStreamManager(
            Ready(raw), response_format=response_format, input_tools=input_tools
        )
    sync_client = client
    return ChatCompletionStreamManager(
        # Built on entry, as the SDK's manager makes its request on entry.
        lambda: replay_chat_stream(sync_client, completion, chunk_chars=chunk_chars),
        response_format=response_format,
        input_tools=input_tools,
    )


@overload
def replay_responses_stream_manager(
    client: OpenAI,
    response: Response | Mapping[str, Any],
    *,
    text_format: Any = ...,
    input_tools: Iterable[Any] | Omit = ...,
    chunk_chars: int = ...,
) -> ResponseStreamManager[Any]: ...


@overload
def replay_responses_stream_manager(
    client: AsyncOpenAI,
    response: Response | Mapping[str, Any],
    *,
    text_format: Any = ...,
    input_tools: Iterable[Any] | Omit = ...,
    chunk_chars: int = ...,
) -> AsyncResponseStreamManager[Any]: ...


def replay_responses_stream_manager(
    client: OpenAI | AsyncOpenAI,
    response: Response | Mapping[str, Any],
    *,
    text_format: Any = omit,
    input_tools: Iterable[Any] | Omit = omit,
    chunk_chars: int = 24,
) -> ResponseStreamManager[Any] | AsyncResponseStreamManager[Any]:
    """What ``client.responses.stream(...)`` returns, replaying ``response``."""
    if isinstance(client, AsyncOpenAI):
        raw = replay_responses_stream(client, response, chunk_chars=chunk_chars)
        return AsyncResponseStreamManager(
            Ready(raw), text_format=text_format, input_tools=input_tools, starting_after=None
        )
    sync_client = client
    return ResponseStreamManager(
        lambda: replay_responses_stream(sync_client, response, chunk_chars=chunk_chars),
        text_format=text_format,
        input_tools=input_tools,
        starting_after=None,
    )


__all__ = [
    "chat_chunks",
    "rebuild_chat_completion",
    "rebuild_response",
    "replay_chat_stream",
    "replay_chat_stream_manager",
    "replay_responses_stream",
    "replay_responses_stream_manager",
    "response_events",
]
