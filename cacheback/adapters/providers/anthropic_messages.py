"""The codec of Anthropic messages (``/v1/messages``).

Request → key, response → answer text, stop reason, usage and verdict, streamed miss →
stored answer (raw events or the ``messages.stream`` helper's), cached answer → message
and raw event stream. SDK-free; the SDK objects of a replay come from ``_anthropic_sdk``
on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ._codec import Codec, SDKFunction
from ._common import (
    OK,
    CachedAnswer,
    Verdict,
    canonical,
    dumps,
    get,
    load_payload,
    new_id,
    reject,
    split_text,
    to_wire,
    token_usage,
)
from ._media import MediaReader, anthropic_image
from ._scope import (
    ANTHROPIC_TRANSPORT,
    RequestKey,
    as_items,
    flatten_text,
    guarded,
    question,
    start,
    strip_key,
    turns,
)

# end_turn and stop_sequence are finished answers; everything else is cut short, refused,
# or waiting for a tool.
_FINISHED = frozenset({"end_turn", "stop_sequence"})
_BLOCKS_OK = frozenset({"text", "thinking", "redacted_thinking"})
# Events of the SDK's MessageStream helper that repeat what the raw events carry.
_HELPER_EVENTS = frozenset({"text", "thinking", "citation", "input_json", "signature"})
# The usage fields a message_delta event carries (the API's MessageDeltaUsage): the
# message's other usage fields (service_tier, cache_creation, ...) come with message_start.
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "output_tokens_details",
    "server_tool_use",
)
# A hit whose stored message has no usage (a synthesised answer): it cost no tokens.
MESSAGE_ZERO_USAGE: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0}


# --- request → key ------------------------------------------------------------------------

_TEXT = frozenset({"text"})
_MEDIA: dict[str, MediaReader | str] = {"image": anthropic_image, "document": "file", "audio": "audio"}


def anthropic_messages_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_media: bool = True,
) -> RequestKey:
    """Key for ``client.messages.create(**params)`` (and ``client.messages.stream``)."""
    return guarded("anthropic", "messages", params, lambda: _key(params, ignore_params, allow_media))


def _key(params: Mapping[str, Any], ignore_params: Iterable[str], allow_media: bool) -> RequestKey:
    # cache_control marks prompt-cache breakpoints: billing, not the answer.
    params = strip_key(params, "cache_control")
    b, raw = start("anthropic", "messages", params, ANTHROPIC_TRANSPORT, ignore_params)
    if "system" in b.body:
        b.body["system"] = flatten_text(canonical(b.body["system"]), _TEXT)
    if canonical(b.body.get("tools")):
        b.exact("tools present")
    items = as_items(raw, b, "messages")

    def is_tool_result(m: Mapping[str, Any]) -> bool:
        content = m.get("content")
        return (
            isinstance(content, list)
            and bool(content)
            and all(isinstance(c, Mapping) and c.get("type") == "tool_result" for c in content)
        )

    # The human's question, not a turn that only carries tool results.
    last_user = max(
        (i for i, m in enumerate(items) if m.get("role") == "user" and not is_tool_result(m)),
        default=-1,
    )
    parts = question(b, items, last_user, _TEXT, _MEDIA, allow_media)
    if parts is not None:
        if last_user != len(items) - 1:
            last = items[-1]
            b.exact(
                "tool result"
                if is_tool_result(last)
                else "assistant prefill"
                if last.get("role") == "assistant"
                else f"last message is {last.get('role')}"
            )
        if parts.tool_result:
            b.exact("tool result")
        elif parts.rest:
            b.exact("non-text parts in the last user message")
    return b.finish(
        turns(items, last_user, parts, _TEXT),
        parts.text if parts else "",
        media=parts.media if parts else (),
    )


# --- response → answer, stop reason, usage, verdict ----------------------------------------


def message_text(message: object) -> str:
    return "".join(
        get(block, "text") or "" for block in get(message, "content") or [] if get(block, "type") == "text"
    )


def message_finish_reason(message: object) -> str | None:
    stop = get(message, "stop_reason")
    return stop if isinstance(stop, str) else None


def message_usage(message: object) -> dict[str, Any]:
    return token_usage(message, "input_tokens", "output_tokens")


def message_event_usage(event: object) -> dict[str, Any]:
    """``message_start`` carries the model and the input count, ``message_delta`` the
    cumulative counts so far (merged over what came before)."""
    kind = get(event, "type")
    if kind == "message_start":
        return message_usage(get(event, "message"))
    if kind == "message_delta":
        return message_usage(event)
    return {}


def message_verdict(message: object) -> Verdict:
    """Whether an Anthropic message (SDK object or dict) may be cached."""
    if get(message, "type") == "error" or get(message, "error"):
        return reject("error")
    stop = message_finish_reason(message)
    if stop not in _FINISHED:
        return reject(f"stop_reason {stop}")
    for block in get(message, "content") or []:
        kind = get(block, "type")
        if kind not in _BLOCKS_OK:
            return reject("tool call" if kind and "tool" in kind else f"content block {kind}")
    if not message_text(message).strip():
        return reject("empty answer")
    return OK


def message_answer(message: object) -> CachedAnswer:
    """What to store for ``message`` (whether it may be stored: ``message_verdict``)."""
    return CachedAnswer(message_text(message), dumps(to_wire(message)))


# --- cached answer → message and stream -----------------------------------------------------


def message_dict(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,  # symmetry with OpenAI; nothing echoed
    *,
    keep_ids: bool = False,
) -> dict[str, Any]:
    """The wire dict of a message serving ``text`` (the requested model); the payload's
    envelope is kept when it carries the same text. With ``keep_ids`` a stored provider
    message keeps its id; otherwise, and always for a message built around ``text`` alone,
    the id is new. Usage is the stored one, or zeros when unknown."""
    data = load_payload(payload)
    stored = data is not None and message_text(data) == text
    if data is None or not stored:
        data = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "model": model or "",
        }
    if data.get("usage") is None:
        data["usage"] = dict(MESSAGE_ZERO_USAGE)
    if not (keep_ids and stored and data.get("id")):
        data["id"] = new_id("msg_cb")
    if model:
        data["model"] = model
    return data


def message_event_dicts(
    message: object, include_usage: bool = False, chunk_chars: int = 24
) -> list[dict[str, Any]]:
    """The raw stream events a live stream of ``message`` would send, in order (usage is
    always in ``message_start`` and ``message_delta``: ``include_usage`` changes nothing)."""
    data = to_wire(message)
    usage = dict(data.get("usage") or MESSAGE_ZERO_USAGE)
    # Live streams report ~1 output token at the start (none for an answer that cost none).
    start_usage = {**usage, "output_tokens": min(1, int(usage.get("output_tokens") or 0))}
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                **data,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        }
    ]
    for index, block in enumerate(data.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            start = {k: v for k, v in block.items() if k not in ("text", "citations")}
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**start, "text": ""}}
            )
            events.extend(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
                for piece in split_text(block.get("text") or "", chunk_chars)
            )
            for citation in block.get("citations") or []:
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "citations_delta", "citation": citation},
                    }
                )
        elif kind == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            events.extend(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": piece},
                }
                for piece in split_text(block.get("thinking") or "", chunk_chars)
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block.get("signature") or ""},
                }
            )
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": data.get("stop_reason"), "stop_sequence": data.get("stop_sequence")}
    if data.get("stop_details") is not None:
        delta["stop_details"] = data["stop_details"]
    delta_usage = {k: usage[k] for k in _DELTA_USAGE if k in usage}
    delta_usage.setdefault("output_tokens", 0)
    events.append({"type": "message_delta", "delta": delta, "usage": delta_usage})
    events.append({"type": "message_stop"})
    return events


# --- streamed miss → answer to store --------------------------------------------------------


class MessageStreamAccumulator:
    """Rebuilds the message of a streamed miss; takes raw events or the helper's."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, str] = {}
        self._stopped = False
        self._error: str | None = None

    @property
    def text(self) -> str:
        return "".join(
            b.get("text") or "" for _, b in sorted(self._blocks.items()) if b.get("type") == "text"
        )

    def fail(self, reason: str) -> None:
        self._error = self._error or reason

    def feed(self, event: object) -> None:
        kind = get(event, "type")
        if kind in _HELPER_EVENTS:
            return
        if kind == "message_start":
            self._message = dict(to_wire(get(event, "message")))
        elif kind == "content_block_start":
            self._blocks[get(event, "index", 0)] = dict(to_wire(get(event, "content_block")))
        elif kind == "content_block_delta":
            self._feed_delta(get(event, "index", 0), get(event, "delta"))
        elif kind == "message_delta" and self._message is not None:
            delta = to_wire(get(event, "delta")) or {}
            for key in ("stop_reason", "stop_sequence", "stop_details", "container"):
                if key in delta:
                    self._message[key] = delta[key]
            usage = {k: v for k, v in (to_wire(get(event, "usage")) or {}).items() if v is not None}
            # Cumulative totals: they overwrite what message_start said.
            self._message["usage"] = {**(self._message.get("usage") or {}), **usage}
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            self.fail("error event")

    def _feed_delta(self, index: int, delta: object) -> None:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        kind = get(delta, "type")
        if kind == "text_delta":
            block["text"] = (block.get("text") or "") + (get(delta, "text") or "")
        elif kind == "thinking_delta":
            block["thinking"] = (block.get("thinking") or "") + (get(delta, "thinking") or "")
        elif kind == "signature_delta":
            block["signature"] = get(delta, "signature")
        elif kind == "input_json_delta":
            self._json[index] = self._json.get(index, "") + (get(delta, "partial_json") or "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(to_wire(get(delta, "citation")))

    def message(self) -> dict[str, Any] | None:
        """The non-stream message this stream amounts to (as a wire dict)."""
        if self._message is None:
            return None
        blocks = []
        for index, block in sorted(self._blocks.items()):
            if index in self._json:
                try:
                    block = {**block, "input": json.loads(self._json[index] or "{}")}
                except ValueError:
                    block = {**block, "input": self._json[index]}
            blocks.append(block)
        return {**self._message, "content": blocks}

    def finish(self) -> tuple[CachedAnswer | None, Verdict]:
        if self._error is not None:
            return None, reject(self._error)
        data = self.message()
        if data is None or not self._stopped:
            return None, reject("stream ended early")
        verdict = message_verdict(data)
        if not verdict:
            return None, verdict
        return CachedAnswer(message_text(data), dumps(data)), verdict


CODEC = Codec(
    name="messages",
    provider="anthropic",
    path="/v1/messages",
    key=anthropic_messages_key,
    text=message_text,
    finish_reason=message_finish_reason,
    verdict=message_verdict,
    usage=message_usage,
    event_usage=message_event_usage,
    accumulator=MessageStreamAccumulator,
    render=message_dict,
    events=message_event_dicts,
    rebuild=SDKFunction("_anthropic_sdk", "rebuild_message"),
    open_stream=SDKFunction("_anthropic_sdk", "open_message_stream"),
    typed_events=True,  # the Anthropic SDK drops events without an ``event:`` line
    stream_end=b"",
)
