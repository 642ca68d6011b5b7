"""OpenAI SDK types for cache hits: rebuilt responses, typed stream events, SDK streams.

Needs the ``openai`` SDK (the ``openai`` extra). The SDK-free logic lives in the codecs
(``openai_chat``, ``openai_responses``); this module only turns their dicts into the
SDK's own classes, the way the SDK does for an HTTP response (``construct``: no
validation, unknown fields kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast, overload

import httpx2
from openai import AsyncOpenAI, AsyncStream, Omit, OpenAI, Stream, omit
from openai.lib.streaming.chat import AsyncChatCompletionStreamManager, ChatCompletionStreamManager
from openai.lib.streaming.responses import AsyncResponseStreamManager, ResponseStreamManager
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from . import openai_chat, openai_responses
from ._common import discriminator_table, no_request
from ._construct_memo import REPLAYS
from ._openai_echo import echo_key
from ._stream_replay import Ready

_CHAT = openai_chat.CODEC
_RESPONSES = openai_responses.CODEC


def _open(client: OpenAI | AsyncOpenAI, http: httpx2.Response, cast_to: Any) -> Any:
    """The SDK's stream over ``http``, constructed as the SDK does after an HTTP call."""
    if isinstance(client, AsyncOpenAI):
        return no_request(AsyncStream(cast_to=cast_to, response=http, client=client))
    return no_request(Stream(cast_to=cast_to, response=http, client=client))


def open_chat_stream(client: OpenAI | AsyncOpenAI, http: httpx2.Response) -> Any:
    # options=None: legacy mode, which is what chat completions use.
    return _open(client, http, ChatCompletionChunk)


def open_responses_stream(client: OpenAI | AsyncOpenAI, http: httpx2.Response) -> Any:
    # cast_to is the discriminated union itself, as the SDK extracts it from
    # Stream[ResponseStreamEvent]; mypy cannot express a union as a type[...].
    return _open(client, http, cast(Any, ResponseStreamEvent))


def rebuild_chat_completion(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    keep_ids: bool = False,
) -> ChatCompletion:
    """A ``ChatCompletion`` serving ``text`` (from its stored payload when it has one;
    ``keep_ids``: as the provider sent it, id included). ``_request_id`` is None."""

    def make() -> dict[str, Any]:
        return openai_chat.chat_completion_dict(text, payload, model, request, keep_ids=keep_ids)

    if keep_ids:  # a stored response replayed: the same object each time (_construct_memo)
        inputs = _replay_inputs(text, payload, model, request)
        return no_request(REPLAYS.replay(ChatCompletion.construct, inputs, make, size=_size(text, payload)))
    return no_request(ChatCompletion.construct(**make()))


def _replay_inputs(
    text: str, payload: bytes | None, model: str | None, request: Mapping[str, Any] | None
) -> tuple[str, bytes | None, str | None, str] | None:
    """What a replayed OpenAI response is built from (None: an echoed value is not JSON)."""
    echoed = echo_key(request)
    return None if echoed is None else (text, payload, model, echoed)


def _size(text: str, payload: bytes | None) -> int:
    return len(text) + len(payload or b"")


def chat_chunks(
    completion: ChatCompletion | Mapping[str, Any],
    *,
    include_usage: bool = False,
    chunk_chars: int = 24,
) -> list[ChatCompletionChunk]:
    """The ``ChatCompletionChunk`` objects a live stream of ``completion`` would yield."""
    return [
        ChatCompletionChunk.construct(**c)
        for c in openai_chat.chat_chunk_dicts(completion, include_usage, chunk_chars)
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
    stream = _CHAT.replay(client, completion, include_usage, chunk_chars=chunk_chars, headers=headers)
    return cast(Stream[ChatCompletionChunk] | AsyncStream[ChatCompletionChunk], stream)


def rebuild_response(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    keep_ids: bool = False,
) -> Response:
    """A Responses-API ``Response`` serving ``text`` (see ``rebuild_chat_completion``)."""

    def make() -> dict[str, Any]:
        return openai_responses.response_dict(text, payload, model, request, keep_ids=keep_ids)

    if keep_ids:  # see rebuild_chat_completion
        inputs = _replay_inputs(text, payload, model, request)
        return no_request(REPLAYS.replay(Response.construct, inputs, make, size=_size(text, payload)))
    return no_request(Response.construct(**make()))


_RESPONSE_EVENTS = discriminator_table(ResponseStreamEvent)


def response_events(
    response: Response | Mapping[str, Any], *, chunk_chars: int = 24
) -> list[ResponseStreamEvent]:
    """The typed events a live stream of ``response`` would yield."""
    return [
        cast(ResponseStreamEvent, _RESPONSE_EVENTS[e["type"]].construct(**e))
        for e in openai_responses.response_event_dicts(response, chunk_chars=chunk_chars)
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
    stream = _RESPONSES.replay(client, response, chunk_chars=chunk_chars, headers=headers)
    return cast(Stream[ResponseStreamEvent] | AsyncStream[ResponseStreamEvent], stream)


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
    "open_chat_stream",
    "open_responses_stream",
    "rebuild_chat_completion",
    "rebuild_response",
    "replay_chat_stream",
    "replay_chat_stream_manager",
    "replay_responses_stream",
    "replay_responses_stream_manager",
    "response_events",
]
