"""Anthropic SDK types for cache hits: rebuilt messages, typed stream events, SDK streams
and the ``messages.stream`` helper's managers.

Needs the ``anthropic`` SDK (the ``anthropic`` extra). The SDK-free logic lives in the
codec (``anthropic_messages``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast, overload

import httpx2
from anthropic import (
    Anthropic,
    AsyncAnthropic,
    AsyncMessageStream,
    AsyncMessageStreamManager,
    AsyncStream,
    MessageStream,
    MessageStreamManager,
    NotGiven,
    Stream,
    not_given,
)
from anthropic.types import Message, RawMessageStreamEvent

from . import anthropic_messages
from ._common import discriminator_table, no_request
from ._construct_memo import REPLAYS
from ._stream_replay import Ready

_T = TypeVar("_T")


# What the SDK sets on every message it parses (from the response headers).
_PER_REQUEST = ("_request_id", "_workspace_id")
_MESSAGES = anthropic_messages.CODEC


def open_message_stream(client: Anthropic | AsyncAnthropic, http: httpx2.Response) -> Any:
    """The SDK's stream of raw events over ``http``, constructed as the SDK does after an
    HTTP call (``cast_to`` is the event union, as the SDK passes it)."""
    event_type = cast(Any, RawMessageStreamEvent)
    if isinstance(client, AsyncAnthropic):
        return no_request(AsyncStream(cast_to=event_type, response=http, client=client))
    return no_request(Stream(cast_to=event_type, response=http, client=client))


def rebuild_message(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    keep_ids: bool = False,
) -> Message:
    """A ``Message`` serving ``text`` (from its stored payload when it has one;
    ``keep_ids``: with the provider's message id). ``_request_id`` is None."""

    def make() -> dict[str, Any]:
        return anthropic_messages.message_dict(text, payload, model, request, keep_ids=keep_ids)

    if keep_ids:  # a stored response replayed: the same object each time (_construct_memo)
        # Nothing of the request is echoed: the message is a function of these alone.
        size = len(text) + len(payload or b"")
        message = REPLAYS.replay(Message.construct, (text, payload, model), make, size=size)
        return no_request(message, *_PER_REQUEST)
    return no_request(Message.construct(**make()), *_PER_REQUEST)


_EVENTS = discriminator_table(RawMessageStreamEvent)


def message_events(
    message: Message | Mapping[str, Any], *, chunk_chars: int = 24
) -> list[RawMessageStreamEvent]:
    """The raw events a live stream of ``message`` would yield."""
    return [
        cast(RawMessageStreamEvent, _EVENTS[e["type"]].construct(**e))
        for e in anthropic_messages.message_event_dicts(message, chunk_chars=chunk_chars)
    ]


@overload
def replay_message_stream(
    client: Anthropic,
    message: Message | Mapping[str, Any],
    *,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> Stream[RawMessageStreamEvent]: ...


@overload
def replay_message_stream(
    client: AsyncAnthropic,
    message: Message | Mapping[str, Any],
    *,
    chunk_chars: int = ...,
    headers: Mapping[str, str] | None = ...,
) -> AsyncStream[RawMessageStreamEvent]: ...


def replay_message_stream(
    client: Anthropic | AsyncAnthropic,
    message: Message | Mapping[str, Any],
    *,
    chunk_chars: int = 24,
    headers: Mapping[str, str] | None = None,
) -> Stream[RawMessageStreamEvent] | AsyncStream[RawMessageStreamEvent]:
    """The SDK's own stream replaying ``message`` (what ``create(stream=True)`` returns)."""
    stream = _MESSAGES.replay(client, message, chunk_chars=chunk_chars, headers=headers)
    return cast(Stream[RawMessageStreamEvent] | AsyncStream[RawMessageStreamEvent], stream)


# --- the messages.stream() helper --------------------------------------------------------

StreamHook = Callable[[Any], None]


class HookedMessageStreamManager(MessageStreamManager[_T]):
    """``MessageStreamManager`` that hands the ``MessageStream`` it opens to ``on_enter``
    (to mark it ``cacheback_hit`` etc.); otherwise the SDK's class, unchanged."""

    def __init__(
        self,
        api_request: Callable[[], Stream[RawMessageStreamEvent]],
        *,
        output_format: _T | NotGiven = not_given,
        on_enter: StreamHook | None = None,
    ) -> None:
        super().__init__(api_request, output_format=output_format)
        self._on_enter = on_enter

    def __enter__(self) -> MessageStream[_T]:
        stream = super().__enter__()
        if self._on_enter is not None:
            self._on_enter(stream)
        return stream


class AsyncHookedMessageStreamManager(AsyncMessageStreamManager[_T]):
    """The async twin of ``HookedMessageStreamManager``."""

    def __init__(
        self,
        api_request: Awaitable[AsyncStream[RawMessageStreamEvent]],
        *,
        output_format: _T | NotGiven = not_given,
        on_enter: StreamHook | None = None,
    ) -> None:
        super().__init__(api_request, output_format=output_format)
        self._on_enter = on_enter

    async def __aenter__(self) -> AsyncMessageStream[_T]:
        stream = await super().__aenter__()
        if self._on_enter is not None:
            self._on_enter(stream)
        return stream


@overload
def replay_message_stream_manager(
    client: Anthropic,
    message: Message | Mapping[str, Any],
    *,
    on_enter: StreamHook | None = ...,
    chunk_chars: int = ...,
) -> HookedMessageStreamManager[Any]: ...


@overload
def replay_message_stream_manager(
    client: AsyncAnthropic,
    message: Message | Mapping[str, Any],
    *,
    on_enter: StreamHook | None = ...,
    chunk_chars: int = ...,
) -> AsyncHookedMessageStreamManager[Any]: ...


def replay_message_stream_manager(
    client: Anthropic | AsyncAnthropic,
    message: Message | Mapping[str, Any],
    *,
    on_enter: StreamHook | None = None,
    chunk_chars: int = 24,
) -> HookedMessageStreamManager[Any] | AsyncHookedMessageStreamManager[Any]:
    """What ``client.messages.stream(...)`` returns, replaying ``message``: ``with`` it to
    get the SDK's ``MessageStream`` (``text_stream``, ``get_final_message()``, ...)."""

    def entered(stream: Any) -> None:
        no_request(stream, *_PER_REQUEST)  # a replay made no request
        if on_enter is not None:
            on_enter(stream)

    if isinstance(client, AsyncAnthropic):
        raw = replay_message_stream(client, message, chunk_chars=chunk_chars)
        return AsyncHookedMessageStreamManager(Ready(raw), on_enter=entered)
    sync_client = client

    def api_request() -> Stream[RawMessageStreamEvent]:
        # Built on entry, as the SDK's manager makes its request on entry.
        return replay_message_stream(sync_client, message, chunk_chars=chunk_chars)

    return HookedMessageStreamManager(api_request, on_enter=entered)


__all__ = [
    "AsyncHookedMessageStreamManager",
    "HookedMessageStreamManager",
    "message_events",
    "open_message_stream",
    "rebuild_message",
    "replay_message_stream",
    "replay_message_stream_manager",
]
