"""OpenAI chat completions and responses on the wire: what may be cached, what is
stored, how a hit is rebuilt and replayed as a stream.

Everything here works on JSON dicts (or reads SDK objects attribute-wise) and imports no
SDK: the proxy uses it on raw bodies, the SDK facades through ``_openai_codec``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ._common import (
    OK,
    CachedAnswer,
    Verdict,
    dumps,
    get,
    load_payload,
    new_id,
    now,
    reject,
    split_text,
    sse,
    to_wire,
)

# Request parameters that a response echoes but that must come from the caller, never
# from whoever caused the cached answer (they may identify that other caller). The value
# is what the Responses API echoes when the request leaves the parameter out.
_ECHOED_PER_CALLER: dict[str, Any] = {
    "metadata": {},
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "store": True,
    "background": False,  # background=True requests are never cached
}

# What a hit reports when the stored answer carries no usage (a chat stream stored without
# include_usage, a synthesised answer): a hit costs the caller no tokens, and the SDK's
# type is never None there.
CHAT_ZERO_USAGE: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
RESPONSES_ZERO_USAGE: dict[str, Any] = {
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 0},
}


# --- chat completions -------------------------------------------------------------------


def chat_text(completion: object) -> str:
    choices = get(completion, "choices") or []
    if not choices:
        return ""
    return get(get(choices[0], "message"), "content") or ""


def _flagged(moderation: object) -> bool:
    for side in ("input", "output"):
        for result in get(get(moderation, side), "results") or []:
            if get(result, "flagged"):
                return True
    return False


def chat_verdict(completion: object) -> Verdict:
    """Whether a chat completion (SDK object or dict) may be cached."""
    if get(completion, "error"):
        return reject("error")
    choices = get(completion, "choices") or []
    if len(choices) != 1:
        return reject("no choices" if not choices else "several choices")
    choice = choices[0]
    finish = get(choice, "finish_reason")
    if finish in ("length", "content_filter"):
        return reject(f"finish_reason {finish}")
    if finish in ("tool_calls", "function_call"):
        return reject("tool call")
    if finish != "stop":
        return reject(f"finish_reason {finish!r}")
    message = get(choice, "message")
    if get(message, "refusal"):
        return reject("refusal")
    if get(message, "tool_calls") or get(message, "function_call"):
        return reject("tool call")
    if get(message, "audio"):
        return reject("audio output")
    if get(completion, "moderation") is not None and _flagged(get(completion, "moderation")):
        return reject("moderation flagged")
    if not (get(message, "content") or "").strip():
        return reject("empty answer")
    return OK


def chat_answer(completion: object) -> CachedAnswer:
    return CachedAnswer(chat_text(completion), dumps(to_wire(completion)))


def chat_completion_dict(
    text: str,
    payload: bytes | None = None,
    *,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    keep_ids: bool = False,
) -> dict[str, Any]:
    """The wire dict of a chat completion serving ``text``.

    The stored ``payload`` supplies the envelope (usage, logprobs, fingerprint, ...) when it
    carries the same text; otherwise (a synthesised answer, or an entry stored without a
    payload) a minimal completion is built around ``text``. ``model`` is the requested one.
    With ``keep_ids`` a stored provider response keeps its id and ``created`` (it is that
    response, replayed); otherwise, and always for a minimal completion (no provider
    response behind it), they are new. Usage is the stored one, or zeros when unknown.
    """
    data = load_payload(payload)
    stored = data is not None and chat_text(data) == text and len(data.get("choices") or []) == 1
    if data is None or not stored:
        data = {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                }
            ],
            "model": model or "",
        }
    if data.get("usage") is None:
        data["usage"] = dict(CHAT_ZERO_USAGE)
    if not (keep_ids and stored and data.get("id")):
        data["id"] = new_id("chatcmpl-cb")
        data["created"] = now()
    data.setdefault("created", now())
    if model:
        data["model"] = model
    _echo_caller_params(data, request)
    return data


def _caller_value(request: Mapping[str, Any] | None, key: str) -> Any:
    """The caller's own value of an echoed parameter (None: not given)."""
    value = request.get(key) if request is not None else None
    # SDK sentinels (NOT_GIVEN, omit) and anything that is not JSON count as not given.
    return value if isinstance(value, str | bool | int | float | dict) else None


def _echo_caller_params(data: dict[str, Any], request: Mapping[str, Any] | None) -> None:
    """Chat completions echo none of these today; whatever a payload carries is reset."""
    for key in _ECHOED_PER_CALLER:
        if key in data:
            data[key] = _caller_value(request, key)


def _echo_responses_params(data: dict[str, Any], request: Mapping[str, Any] | None) -> None:
    """As the Responses API echoes them for this request: the caller's value, else the
    API's default (``store`` true, ``metadata`` empty, ``background`` false). A field whose
    default is null is left out when the stored response left it out, so the rebuilt
    object's set fields (``to_dict()``, ``exclude_unset``) stay the provider's."""
    for key, default in _ECHOED_PER_CALLER.items():
        value = _caller_value(request, key)
        if value is not None:
            data[key] = value
        elif default is not None or key in data:
            data[key] = copy.deepcopy(default)


def chat_chunk_dicts(
    completion: object, *, include_usage: bool = False, chunk_chars: int = 24
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` dicts a live stream of ``completion`` would send."""
    data = to_wire(completion)
    base: dict[str, Any] = {
        "id": data["id"],
        "object": "chat.completion.chunk",
        "created": data["created"],
        "model": data["model"],
    }
    for key in ("service_tier", "system_fingerprint"):
        if data.get(key) is not None:
            base[key] = data[key]
    if include_usage:
        base["usage"] = None  # live streams send usage: null until the last chunk

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    chunks: list[dict[str, Any]] = []
    choices = data.get("choices") or []
    for choice in choices:
        chunks.append(chunk(choice["index"], {"role": "assistant", "content": "", "refusal": None}))
    for choice in choices:
        content = (choice.get("message") or {}).get("content") or ""
        chunks.extend(chunk(choice["index"], {"content": p}) for p in split_text(content, chunk_chars))
    for choice in choices:
        chunks.append(chunk(choice["index"], {}, choice.get("finish_reason") or "stop"))
    if include_usage:
        usage = data.get("usage") or dict(CHAT_ZERO_USAGE)  # the same rule as a plain hit
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks


def chat_sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    """Server-sent events of chat chunks, ``[DONE]`` included."""
    return [sse(c) for c in chunks] + [sse("[DONE]")]


class ChatStreamAccumulator:
    """Rebuilds the completion of a streamed chat miss from its chunks."""

    def __init__(self) -> None:
        self._envelope: dict[str, Any] = {}
        self._content: dict[int, list[str]] = {}
        self._refusal: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, str] = {}
        self._other: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._moderation: Any = None
        self._error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self._content.get(0, []))

    def fail(self, reason: str) -> None:
        """The stream broke (an exception while iterating): nothing will be cached."""
        self._error = self._error or reason

    def feed(self, event: object) -> None:
        if not self._envelope:
            for key in ("id", "created", "model", "service_tier", "system_fingerprint"):
                value = get(event, key)
                if value is not None:
                    self._envelope[key] = value
        if get(event, "error"):
            self.fail("error event")
        usage = get(event, "usage")
        if usage is not None:
            self._usage = to_wire(usage)
        moderation = get(event, "moderation")
        if moderation is not None:
            self._moderation = to_wire(moderation)
        for choice in get(event, "choices") or []:
            index = get(choice, "index", 0)
            delta = get(choice, "delta")
            if delta is not None:
                self._feed_delta(index, delta)
            finish = get(choice, "finish_reason")
            if finish:
                self._finish[index] = finish

    def _feed_delta(self, index: int, delta: object) -> None:
        content = get(delta, "content")
        if content:
            self._content.setdefault(index, []).append(content)
        refusal = get(delta, "refusal")
        if refusal:
            self._refusal.setdefault(index, []).append(refusal)
        for call in get(delta, "tool_calls") or []:
            slot = self._tools.setdefault(index, {}).setdefault(
                get(call, "index", 0), {"type": "function", "function": {"name": "", "arguments": ""}}
            )
            if get(call, "id"):
                slot["id"] = get(call, "id")
            function = get(call, "function")
            if function is not None:
                slot["function"]["name"] += get(function, "name") or ""
                slot["function"]["arguments"] += get(function, "arguments") or ""
        for key in ("function_call", "audio"):
            if get(delta, key) is not None:
                self._other.setdefault(index, {})[key] = to_wire(get(delta, key))

    def completion(self) -> dict[str, Any]:
        """The non-stream completion this stream amounts to (as a wire dict)."""
        indexes = sorted(set(self._content) | set(self._refusal) | set(self._tools) | set(self._finish))
        choices = []
        for i in indexes:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(self._content[i]) if i in self._content else None,
                "refusal": "".join(self._refusal[i]) if i in self._refusal else None,
                "annotations": [],
                **self._other.get(i, {}),
            }
            if i in self._tools:
                message["tool_calls"] = [self._tools[i][k] for k in sorted(self._tools[i])]
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": self._finish.get(i)}
            )
        data = {**self._envelope, "object": "chat.completion", "choices": choices}
        if self._usage is not None:
            data["usage"] = self._usage
        if self._moderation is not None:
            data["moderation"] = self._moderation
        return data

    def finish(self) -> tuple[CachedAnswer | None, Verdict]:
        if self._error is not None:
            return None, reject(self._error)
        data = self.completion()
        if not self._finish:
            return None, reject("stream ended early")
        verdict = chat_verdict(data)
        if not verdict:
            return None, verdict
        return CachedAnswer(chat_text(data), dumps(data)), verdict


# --- responses --------------------------------------------------------------------------

_RESPONSE_ITEMS_OK = frozenset({"message", "reasoning"})


def responses_text(response: object) -> str:
    """All ``output_text`` parts of the message items, like ``Response.output_text``."""
    texts: list[str] = []
    for item in get(response, "output") or []:
        if get(item, "type") == "message":
            for part in get(item, "content") or []:
                if get(part, "type") == "output_text":
                    texts.append(get(part, "text") or "")
    return "".join(texts)


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
        if kind not in _RESPONSE_ITEMS_OK:
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
    return CachedAnswer(responses_text(response), dumps(to_wire(response)))


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
    *,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    keep_ids: bool = False,
) -> dict[str, Any]:
    """The wire dict of a Responses-API response serving ``text`` (see chat_completion_dict).

    With ``keep_ids`` a stored provider response keeps its id, its output item ids and its
    timestamps, so ``previous_response_id=hit.id`` and ``responses.retrieve(hit.id)`` reach
    the response the provider really holds."""
    data = load_payload(payload)
    created = now()
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
        data["created_at"] = created
        if "completed_at" in data:
            data["completed_at"] = created
    data.setdefault("created_at", created)
    if data.get("usage") is None:
        data["usage"] = copy.deepcopy(RESPONSES_ZERO_USAGE)
    if model:
        data["model"] = model
    _echo_responses_params(data, request)
    return data


def response_event_dicts(response: object, *, chunk_chars: int = 24) -> list[dict[str, Any]]:
    """The typed events a live stream of ``response`` would send, in order."""
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


def responses_sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [sse(e, event=e["type"]) for e in events]


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
