"""The codec of OpenAI chat completions (``/chat/completions``).

Request → key, response → answer text, finish reason, usage and verdict, streamed miss →
stored answer, cached answer → completion and chunk stream. SDK-free: wire dicts and SDK
objects are read alike; the SDK objects of a replay come from ``_openai_sdk`` on first use.
"""

from __future__ import annotations

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
from ._media import MediaReader, chat_audio, chat_image
from ._openai_echo import reset_echoed
from ._scope import (
    OPENAI_TRANSPORT,
    RequestKey,
    as_items,
    guarded,
    question,
    start,
    truthy,
    turns,
)

# What a hit reports when the stored answer carries no usage (a chat stream stored without
# include_usage, a synthesised answer): a hit costs the caller no tokens, and the SDK's
# type is never None there.
CHAT_ZERO_USAGE: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

# --- request → key ------------------------------------------------------------------------

_TEXT = frozenset({"text"})
_MEDIA: dict[str, MediaReader | str] = {"image_url": chat_image, "input_audio": chat_audio, "file": "file"}


def openai_chat_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_media: bool = True,
) -> RequestKey:
    """Key for ``client.chat.completions.create(**params)``."""
    return guarded("openai", "chat", params, lambda: _key(params, ignore_params, allow_media))


def _key(params: Mapping[str, Any], ignore_params: Iterable[str], allow_media: bool) -> RequestKey:
    b, raw = start("openai", "chat", params, OPENAI_TRANSPORT, ignore_params)
    options = params.get("stream_options")
    stream_usage = b.stream and isinstance(options, Mapping) and truthy(options.get("include_usage"))
    n = canonical(b.body.get("n"))
    if n is not None and n != 1:
        b.block("n>1")
    b.body.pop("n", None)  # n=1 is the default: same scope as no n
    modalities = canonical(b.body.get("modalities")) or []
    if "audio" in modalities or canonical(b.body.get("audio")) is not None:
        b.block("audio output")
    if canonical(b.body.get("tools")) or canonical(b.body.get("functions")):
        b.exact("tools present")
    items = as_items(raw, b, "messages")
    last_user = max((i for i, m in enumerate(items) if m.get("role") == "user"), default=-1)
    parts = question(b, items, last_user, _TEXT, _MEDIA, allow_media)
    if parts is not None:
        if last_user != len(items) - 1:
            b.exact(f"last message is from {items[-1].get('role')!s}")
        if parts.rest:
            b.exact("non-text parts in the last user message")
    return b.finish(
        turns(items, last_user, parts, _TEXT),
        parts.text if parts else "",
        stream_usage=stream_usage,
        media=parts.media if parts else (),
    )


# --- response → answer, finish reason, usage, verdict --------------------------------------


def chat_text(completion: object) -> str:
    choices = get(completion, "choices") or []
    if not choices:
        return ""
    return get(get(choices[0], "message"), "content") or ""


def chat_finish_reason(completion: object) -> str | None:
    choices = get(completion, "choices") or []
    finish = get(choices[0], "finish_reason") if choices else None
    return finish if isinstance(finish, str) else None


def chat_usage(completion_or_chunk: object) -> dict[str, Any]:
    """The engine's usage record of a completion, or of a chunk (the last one of a stream
    with ``include_usage`` carries the totals)."""
    return token_usage(completion_or_chunk, "prompt_tokens", "completion_tokens")


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
    finish = chat_finish_reason(completion)
    if finish in ("length", "content_filter"):
        return reject(f"finish_reason {finish}")
    if finish in ("tool_calls", "function_call"):
        return reject("tool call")
    if finish != "stop":
        return reject(f"finish_reason {finish!r}")
    message = get(choices[0], "message")
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
    """What to store for ``completion`` (whether it may be stored: ``chat_verdict``)."""
    return CachedAnswer(chat_text(completion), dumps(to_wire(completion)))


# --- cached answer → completion and stream ------------------------------------------------


def chat_completion_dict(
    text: str,
    payload: bytes | None = None,
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    *,
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
    if "created" not in data:  # drawn only when needed: a replay draws nothing fresh
        data["created"] = now()
    if model:
        data["model"] = model
    reset_echoed(data, request)
    return data


def chat_chunk_dicts(
    completion: object, include_usage: bool = False, chunk_chars: int = 24
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


# --- streamed miss → answer to store --------------------------------------------------------


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


CODEC = Codec(
    name="chat",
    provider="openai",
    path="/chat/completions",
    key=openai_chat_key,
    text=chat_text,
    finish_reason=chat_finish_reason,
    verdict=chat_verdict,
    usage=chat_usage,
    event_usage=chat_usage,  # a chunk has the completion's shape (model, usage)
    accumulator=ChatStreamAccumulator,
    render=chat_completion_dict,
    events=chat_chunk_dicts,
    rebuild=SDKFunction("_openai_sdk", "rebuild_chat_completion"),
    open_stream=SDKFunction("_openai_sdk", "open_chat_stream"),
    typed_events=False,
    stream_end=b"data: [DONE]\n\n",
)
