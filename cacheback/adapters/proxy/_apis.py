"""The three cached APIs (chat completions, responses, messages): how each is keyed,
judged, rendered, framed as SSE and counted for usage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..providers import (
    CachedAnswer,
    ChatStreamAccumulator,
    MessageStreamAccumulator,
    RequestKey,
    ResponsesStreamAccumulator,
    Verdict,
    anthropic_messages_key,
    chat_answer,
    chat_chunk_dicts,
    chat_completion_dict,
    chat_verdict,
    message_answer,
    message_dict,
    message_event_dicts,
    message_verdict,
    openai_chat_key,
    openai_responses_key,
    response_dict,
    response_event_dicts,
    responses_answer,
    responses_verdict,
)
from ._errors import Provider
from ._wire import dumps

ApiName = Literal["chat", "responses", "messages"]


class Accumulator(Protocol):
    def feed(self, event: object) -> None: ...

    def fail(self, reason: str) -> None: ...

    def finish(self) -> tuple[CachedAnswer | None, Verdict]: ...


UsageTap = Callable[[Mapping[str, Any], dict[str, Any]], None]


def _chat_usage(data: Mapping[str, Any], usage: dict[str, Any]) -> None:
    """Chat completion or chunk → ``usage`` (the engine's cost-accounting record)."""
    if data.get("model"):
        usage["model"] = data["model"]
    u = data.get("usage")
    if isinstance(u, Mapping):
        usage["input_tokens"] = int(u.get("prompt_tokens") or 0)
        usage["output_tokens"] = int(u.get("completion_tokens") or 0)


def _io_usage(data: Mapping[str, Any], usage: dict[str, Any]) -> None:
    """A Responses-API response or an Anthropic message (``input_tokens``/``output_tokens``)."""
    if data.get("model"):
        usage["model"] = data["model"]
    u = data.get("usage")
    if isinstance(u, Mapping):
        for name in ("input_tokens", "output_tokens"):
            if u.get(name) is not None:
                usage[name] = int(u[name])


def _responses_event_usage(event: Mapping[str, Any], usage: dict[str, Any]) -> None:
    if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
        response = event.get("response")
        if isinstance(response, Mapping):
            _io_usage(response, usage)


def _messages_event_usage(event: Mapping[str, Any], usage: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message_start" and isinstance(event.get("message"), Mapping):
        _io_usage(event["message"], usage)
    elif kind == "message_delta":
        _io_usage(event, usage)  # cumulative counts


@dataclass(frozen=True, slots=True)
class Api:
    name: ApiName
    provider: Provider
    path: str  # appended to the provider's base URL
    key: Callable[..., RequestKey]
    verdict: Callable[[object], Verdict]
    answer: Callable[[object], CachedAnswer]
    render: Callable[..., dict[str, Any]]
    events: Callable[..., list[dict[str, Any]]]  # a rendered answer as live stream events
    accumulator: Callable[[], Accumulator]
    usage: UsageTap  # from a complete response
    event_usage: UsageTap  # from one stream event

    def event_bytes(self, event: Mapping[str, Any]) -> bytes:
        data = dumps(event)
        if self.name == "chat":
            return b"data: " + data + b"\n\n"
        # Typed events carry an ``event:`` line (the Anthropic SDK drops events without one).
        return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"

    @property
    def stream_end(self) -> bytes:
        return b"data: [DONE]\n\n" if self.name == "chat" else b""

    def sse(self, data: dict[str, Any], include_usage: bool) -> bytes:
        """A whole answer as the body of a stream (a replayed hit)."""
        events = self.events(data, include_usage)
        return b"".join([self.event_bytes(e) for e in events]) + self.stream_end


def _chat_events(data: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    return chat_chunk_dicts(data, include_usage=include_usage)


def _plain_events(
    builder: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> Callable[..., list[dict[str, Any]]]:
    def events(data: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
        return builder(data)

    return events


CHAT = Api(
    "chat",
    "openai",
    "/chat/completions",
    openai_chat_key,
    chat_verdict,
    chat_answer,
    chat_completion_dict,
    _chat_events,
    ChatStreamAccumulator,
    _chat_usage,
    _chat_usage,
)
RESPONSES = Api(
    "responses",
    "openai",
    "/responses",
    openai_responses_key,
    responses_verdict,
    responses_answer,
    response_dict,
    _plain_events(response_event_dicts),
    ResponsesStreamAccumulator,
    _io_usage,
    _responses_event_usage,
)
MESSAGES = Api(
    "messages",
    "anthropic",
    "/v1/messages",
    anthropic_messages_key,
    message_verdict,
    message_answer,
    message_dict,
    _plain_events(message_event_dicts),
    MessageStreamAccumulator,
    _io_usage,
    _messages_event_usage,
)
