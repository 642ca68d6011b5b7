"""Per-API translation tables: how each cached SDK method keys, stores and replays."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import providers as p
from ..providers import CachedAnswer, RequestKey, StreamAccumulator
from ..providers._common import get


def _usage_openai_chat(resp: Any) -> dict[str, Any]:
    u = get(resp, "usage")
    return {
        "input_tokens": int(get(u, "prompt_tokens", 0) or 0),
        "output_tokens": int(get(u, "completion_tokens", 0) or 0),
        "model": get(resp, "model"),
    }


def _usage_io(resp: Any) -> dict[str, Any]:
    u = get(resp, "usage")
    return {
        "input_tokens": int(get(u, "input_tokens", 0) or 0),
        "output_tokens": int(get(u, "output_tokens", 0) or 0),
        "model": get(resp, "model"),
    }


class Rebuild(Protocol):
    """The SDK object serving ``text``. ``keep_ids``: the answer is a stored provider
    response replayed (a hit, a coalesced copy), so it keeps the provider's ids; without
    it (a synthesised answer) the ids are new."""

    def __call__(
        self,
        text: str,
        payload: bytes | None,
        model: str | None,
        request: Mapping[str, Any],
        /,
        *,
        keep_ids: bool = False,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class ApiSpec:
    name: str
    key: Callable[..., RequestKey]
    answer: Callable[[Any], CachedAnswer | None]
    rebuild: Rebuild
    replay: Callable[[Any, Any, RequestKey], Any]
    accumulator: Callable[[], StreamAccumulator]
    usage: Callable[[Any], dict[str, Any]]


def _chat_answer(resp: Any) -> CachedAnswer | None:
    return p.chat_answer(resp) if p.chat_verdict(resp) else None


def _responses_answer(resp: Any) -> CachedAnswer | None:
    return p.responses_answer(resp) if p.responses_verdict(resp) else None


def _message_answer(resp: Any) -> CachedAnswer | None:
    return p.message_answer(resp) if p.message_verdict(resp) else None


def _rebuild_chat(
    text: str, payload: bytes | None, model: str | None, req: Mapping[str, Any], /, *, keep_ids: bool = False
) -> Any:
    return p.rebuild_chat_completion(text, payload, model=model, request=req, keep_ids=keep_ids)


def _rebuild_response(
    text: str, payload: bytes | None, model: str | None, req: Mapping[str, Any], /, *, keep_ids: bool = False
) -> Any:
    return p.rebuild_response(text, payload, model=model, request=req, keep_ids=keep_ids)


def _rebuild_message(
    text: str, payload: bytes | None, model: str | None, req: Mapping[str, Any], /, *, keep_ids: bool = False
) -> Any:
    return p.rebuild_message(text, payload, model=model, request=req, keep_ids=keep_ids)


OPENAI_CHAT = ApiSpec(
    name="openai.chat",
    key=p.openai_chat_key,
    answer=_chat_answer,
    rebuild=_rebuild_chat,
    replay=lambda client, obj, key: p.replay_chat_stream(client, obj, include_usage=key.stream_usage),
    accumulator=p.ChatStreamAccumulator,
    usage=_usage_openai_chat,
)

OPENAI_RESPONSES = ApiSpec(
    name="openai.responses",
    key=p.openai_responses_key,
    answer=_responses_answer,
    rebuild=_rebuild_response,
    replay=lambda client, obj, key: p.replay_responses_stream(client, obj),
    accumulator=p.ResponsesStreamAccumulator,
    usage=_usage_io,
)

ANTHROPIC_MESSAGES = ApiSpec(
    name="anthropic.messages",
    key=p.anthropic_messages_key,
    answer=_message_answer,
    rebuild=_rebuild_message,
    replay=lambda client, obj, key: p.replay_message_stream(client, obj),
    accumulator=p.MessageStreamAccumulator,
    usage=_usage_io,
)
