"""The codec of the OpenAI Responses API (``/responses``).

Request → key, response → answer text, finish reason, usage and verdict, streamed miss →
stored answer, cached answer → response and typed event stream. SDK-free; the SDK
objects of a replay come from ``_openai_sdk`` on first use.
"""

from __future__ import annotations

import copy
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
    now,
    reject,
    split_text,
    to_wire,
    token_usage,
)
from ._media import MediaReader, responses_image
from ._openai_echo import echo_as_responses
from ._scope import OPENAI_TRANSPORT, RequestKey, as_items, guarded, question, start, truthy, turns

# A hit whose stored response has no usage (a synthesised answer): it cost no tokens.
RESPONSES_ZERO_USAGE: dict[str, Any] = {
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 0},
}

# --- request → key ------------------------------------------------------------------------

_TEXT = frozenset({"input_text"})
_MEDIA: dict[str, MediaReader | str] = {
    "input_image": responses_image,
    "input_audio": "audio",
    "input_file": "file",
}


def openai_responses_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_media: bool = True,
) -> RequestKey:
    """Key for ``client.responses.create(**params)``."""
    return guarded("openai", "responses", params, lambda: _key(params, ignore_params, allow_media))


def _key(params: Mapping[str, Any], ignore_params: Iterable[str], allow_media: bool) -> RequestKey:
    b, raw = start("openai", "responses", params, OPENAI_TRANSPORT, ignore_params)
    if canonical(params.get("conversation")) is not None:
        b.block("server-side conversation state")
    if truthy(params.get("background")):
        b.block("background response")
    if canonical(params.get("response_id")) is not None:
        b.block("resuming a stored response")
    if canonical(b.body.get("tools")):
        b.exact("tools present")
    modalities = canonical(b.body.get("modalities")) or []
    if "audio" in modalities:
        b.block("audio output")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else as_items(raw, b, "input")
    for i, item in enumerate(items):
        # {"role": ..., "content": ...} and {"type": "message", ...} are the same item.
        if "role" in item and item.get("type") == "message":
            items[i] = {k: v for k, v in item.items() if k != "type"}
    last_user = max(
        (i for i, m in enumerate(items) if m.get("role") == "user" and "type" not in m),
        default=-1,
    )
    parts = question(b, items, last_user, _TEXT, _MEDIA, allow_media)
    if parts is not None:
        if last_user != len(items) - 1:
            last = items[-1]
            b.exact(f"last input item is {last.get('type') or last.get('role')!s}")
        if parts.rest:
            b.exact("non-text parts in the last user message")
    return b.finish(
        turns(items, last_user, parts, _TEXT),
        parts.text if parts else "",
        media=parts.media if parts else (),
    )


# --- response → answer, finish reason, usage, verdict --------------------------------------

_ITEMS_OK = frozenset({"message", "reasoning"})
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_text(response: object) -> str:
    """All ``output_text`` parts of the message items, like ``Response.output_text``."""
    texts: list[str] = []
    for item in get(response, "output") or []:
        if get(item, "type") == "message":
            for part in get(item, "content") or []:
                if get(part, "type") == "output_text":
                    texts.append(get(part, "text") or "")
    return "".join(texts)


def responses_finish_reason(response: object) -> str | None:
    """``completed``, or why not: the incomplete reason (``max_output_tokens``,
    ``content_filter``) or the status (``failed``, ``in_progress``, ...)."""
    reason = get(get(response, "incomplete_details"), "reason") or get(response, "status")
    return reason if isinstance(reason, str) else None


def responses_usage(response: object) -> dict[str, Any]:
    return token_usage(response, "input_tokens", "output_tokens")


def responses_event_usage(event: object) -> dict[str, Any]:
    """Usage comes once, with the response of the closing event."""
    if get(event, "type") in _FINAL_EVENTS:
        return responses_usage(get(event, "response"))
    return {}


def responses_verdict(response: object) -> Verdict:
    status = get(response, "status")
    if get(response, "error"):
        return reject("error")
    if status != "completed":
        return reject(f"status {status}")
    if get(response, "incomplete_details"):
        return reject("incomplete")
    for item in get(response, "output") or []:
        kind = get(item, "type")
        if kind not in _ITEMS_OK:
            return reject(f"output item {kind}")
        if kind == "message":
            if get(item, "status") not in (None, "completed"):
                return reject(f"message {get(item, 'status')}")
            for part in get(item, "content") or []:
                if get(part, "type") == "refusal":
                    return reject("refusal")
    if not responses_text(response).strip():
        return reject("empty answer")
    return OK


def responses_answer(response: object) -> CachedAnswer:
    """What to store for ``response`` (whether it may be stored: ``responses_verdict``)."""
    return CachedAnswer(responses_text(response), dumps(to_wire(response)))


# --- cached answer → response and stream ----------------------------------------------------


def _text_message(text: str) -> dict[str, Any]:
    return {
        "id": new_id("msg_cb"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def response_dict(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    keep_ids: bool = False,
) -> dict[str, Any]:
    """The wire dict of a Responses-API response serving ``text`` (see
    ``openai_chat.chat_completion_dict``).

    With ``keep_ids`` a stored provider response keeps its id, its output item ids and its
    timestamps, so ``previous_response_id=hit.id`` and ``responses.retrieve(hit.id)`` reach
    the response the provider really holds."""
    data = load_payload(payload)
    stored = data is not None and responses_text(data) == text
    if data is None or not stored:
        req = request or {}
        data = {
            "object": "response",
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "output": [_text_message(text)],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "temperature": req.get("temperature"),
            "top_p": req.get("top_p"),
            "max_output_tokens": req.get("max_output_tokens"),
            "model": model or "",
        }
    # An id is only worth keeping if the provider kept the response: one made with
    # store=false cannot be chained or retrieved, so its hits get fresh ids.
    kept_upstream = data.get("store") is not False
    if not (keep_ids and stored and data.get("id") and kept_upstream):
        # Fresh item ids too: the caller may feed them back as input items.
        data["output"] = [
            {**item, "id": new_id("msg_cb")} if item.get("type") == "message" else item
            for item in data.get("output") or []
        ]
        data["id"] = new_id("resp_cb")
        data["created_at"] = created = now()
        if "completed_at" in data:
            data["completed_at"] = created
    if "created_at" not in data:  # drawn only when needed: a replay draws nothing fresh
        data["created_at"] = now()
    if data.get("usage") is None:
        data["usage"] = copy.deepcopy(RESPONSES_ZERO_USAGE)
    if model:
        data["model"] = model
    echo_as_responses(data, request)
    return data


def response_event_dicts(
    response: object, include_usage: bool = False, chunk_chars: int = 24
) -> list[dict[str, Any]]:
    """The typed events a live stream of ``response`` would send, in order (usage is
    always in ``response.completed``: ``include_usage`` changes nothing)."""
    data = to_wire(response)
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    pending = {**data, "status": "in_progress", "output": [], "usage": None}
    pending.pop("completed_at", None)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for index, item in enumerate(data.get("output") or []):
        if item.get("type") != "message":
            emit("response.output_item.added", output_index=index, item=item)
            emit("response.output_item.done", output_index=index, item=item)
            continue
        emit(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        for content_index, part in enumerate(item.get("content") or []):
            where = {"item_id": item["id"], "output_index": index, "content_index": content_index}
            if part.get("type") == "output_text":
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                emit("response.content_part.added", part=empty, **where)
                for piece in split_text(part.get("text") or "", chunk_chars):
                    emit("response.output_text.delta", delta=piece, logprobs=[], **where)
                emit("response.output_text.done", text=part.get("text") or "", logprobs=[], **where)
            else:
                emit("response.content_part.added", part=part, **where)
            emit("response.content_part.done", part=part, **where)
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=data)
    return events


# --- streamed miss → answer to store --------------------------------------------------------


class ResponsesStreamAccumulator:
    """Keeps the final response of a streamed Responses-API miss."""

    def __init__(self) -> None:
        self._deltas: list[str] = []
        self._final: dict[str, Any] | None = None
        self._error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self._deltas)

    def fail(self, reason: str) -> None:
        self._error = self._error or reason

    def feed(self, event: object) -> None:
        kind = get(event, "type")
        if kind == "response.output_text.delta":
            self._deltas.append(get(event, "delta") or "")
        elif kind == "response.completed":
            self._final = to_wire(get(event, "response"))
        elif kind in ("response.failed", "response.incomplete"):
            self.fail(str(kind))
        elif kind == "error":
            self.fail(f"error event: {get(event, 'message')}")

    def finish(self) -> tuple[CachedAnswer | None, Verdict]:
        if self._error is not None:
            return None, reject(self._error)
        if self._final is None:
            return None, reject("stream ended early")
        verdict = responses_verdict(self._final)
        if not verdict:
            return None, verdict
        return CachedAnswer(responses_text(self._final), dumps(self._final)), verdict


CODEC = Codec(
    name="responses",
    provider="openai",
    path="/responses",
    key=openai_responses_key,
    text=responses_text,
    finish_reason=responses_finish_reason,
    verdict=responses_verdict,
    usage=responses_usage,
    event_usage=responses_event_usage,
    accumulator=ResponsesStreamAccumulator,
    render=response_dict,
    events=response_event_dicts,
    rebuild=SDKFunction("_openai_sdk", "rebuild_response"),
    open_stream=SDKFunction("_openai_sdk", "open_responses_stream"),
    typed_events=True,
    stream_end=b"",
)
