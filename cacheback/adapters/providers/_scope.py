"""Cache keys for provider requests: the match text and the scope around it.

A request is split in two. ``query`` is the text of the last user message: the only part
matched semantically. ``scope`` is a hash of everything else that decides the answer
(provider, API, model, system prompt / instructions, every other turn, tools,
tool_choice, output format, the sampling and length parameters, reasoning/thinking
settings, beta headers). A cached answer is only ever served inside the same scope.

Rules (documented for users; see ``RequestKey.reason``):

* not cacheable: ``n > 1``; audio output; images, audio or files in the last user
  message (images allowed with ``allow_images=True``, keyed exactly); a server-side
  conversation (``conversation=``) or ``background=True`` (Responses API); no user
  message; values that cannot be keyed (e.g. a one-shot iterator of messages).
* exact-only (no semantic match, the whole request must repeat): tools or functions
  present; the last message is not the user's (a tool result, an assistant prefill).
* everything else: semantic within the scope.

Transport-only parameters (``stream``, ``stream_options``, ``timeout``,
``extra_headers`` other than ``*-beta`` ones, ``extra_query``, ``metadata``, ``user``,
``store``, ``service_tier``, prompt-cache hints, ...) are not part of the scope, so a
streamed and a non-streamed call share entries. ``extra_body`` is merged into the
parameters as the SDK merges it into the request body. Unknown parameters are part of
the scope: a parameter this module has never heard of can only cause misses, never a
wrong hit. ``ignore_params`` drops chosen top-level parameters from the scope (never the
conversation itself: ``messages`` / ``input``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cacheback.core._types import LookupRequest

from ._common import Unkeyable, canonical, canonical_json, digest, to_wire

SCOPE_VERSION = 1  # bump when canonicalisation changes: old entries then never match

_COMMON_TRANSPORT = frozenset(
    {"stream", "timeout", "extra_headers", "extra_query", "extra_body", "metadata", "service_tier"}
)
_OPENAI_TRANSPORT = _COMMON_TRANSPORT | {
    "stream_options",
    "user",
    "store",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "background",
    "starting_after",
}
_ANTHROPIC_TRANSPORT = _COMMON_TRANSPORT | {
    "speed",
    "inference_geo",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
    "cache_control",
}
_CONVERSATION = frozenset({"messages", "input"})


@dataclass(frozen=True, slots=True)
class RequestKey:
    """How one provider request is cached.

    ``reason`` is ``"ok"`` for a semantic key, else why the request is exact-only or not
    cacheable. ``media`` holds the non-text parts of the last user message that were
    allowed (``allow_images=True``); they are also part of ``scope``.
    """

    provider: str
    api: str
    model: str
    query: str
    scope: str
    cacheable: bool
    semantic: bool
    reason: str
    stream: bool = False
    stream_usage: bool = False  # chat: stream_options.include_usage was requested
    media: tuple[Any, ...] = ()

    def lookup_request(self, namespace: str | None = None, **overrides: Any) -> LookupRequest:
        """The engine request for this key (``overrides`` set any other field)."""
        return LookupRequest(
            query=self.query,
            scope=self.scope,
            namespace=namespace,
            cacheable=self.cacheable,
            semantic=self.semantic,
            bypass_reason=None if self.cacheable else self.reason,
            **overrides,
        )


@dataclass(frozen=True, slots=True)
class _Parts:
    text: str
    rest: list[Any]  # non-text parts kept in the scope
    media: list[Any]  # allowed media parts (also kept in the scope)
    blocked: str | None  # a media kind that makes the request uncacheable
    tool_result: bool


@dataclass(slots=True)
class _Builder:
    provider: str
    api: str
    body: dict[str, Any]
    beta: dict[str, Any]
    stream: bool
    model: str
    blocked: str | None = None
    exact_reasons: list[str] | None = None

    def block(self, reason: str) -> None:
        if self.blocked is None:
            self.blocked = reason

    def exact(self, reason: str) -> None:
        if self.exact_reasons is None:
            self.exact_reasons = []
        self.exact_reasons.append(reason)

    def finish(
        self,
        turns: Any,
        query: str,
        *,
        stream_usage: bool = False,
        media: Iterable[Any] = (),
    ) -> RequestKey:
        doc = {
            "v": SCOPE_VERSION,
            "provider": self.provider,
            "api": self.api,
            "params": self.body,
            "beta": self.beta,
            "turns": turns,
        }
        try:
            scope = f"{self.provider}.{self.api}:{self.model}:{digest(canonical_json(doc))}"
        except (Unkeyable, ValueError) as exc:
            self.block(f"unkeyable request: {exc}")
            scope = f"{self.provider}.{self.api}:{self.model}:-"
        if self.blocked is None and not query.strip() and not self.exact_reasons:
            self.block("empty user message")
        semantic = self.blocked is None and not self.exact_reasons
        if self.blocked is not None:
            reason = self.blocked
        elif self.exact_reasons:
            reason = "exact-only: " + "; ".join(self.exact_reasons)
        else:
            reason = "ok"
        return RequestKey(
            provider=self.provider,
            api=self.api,
            model=self.model,
            query=query,
            scope=scope,
            cacheable=self.blocked is None,
            semantic=semantic,
            reason=reason,
            stream=self.stream,
            stream_usage=stream_usage,
            media=tuple(media),
        )


def _unkeyable(provider: str, api: str, params: Mapping[str, Any], exc: Exception) -> RequestKey:
    model = params.get("model")
    return RequestKey(
        provider=provider,
        api=api,
        model=model if isinstance(model, str) else "",
        query="",
        scope="",
        cacheable=False,
        semantic=False,
        reason=f"unkeyable request: {exc}",
        stream=_truthy(params.get("stream")),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return bool(canonical(value))
    except Unkeyable:
        return False


def _start(
    provider: str,
    api: str,
    params: Mapping[str, Any],
    transport: frozenset[str],
    ignore_params: Iterable[str],
) -> tuple[_Builder, Any]:
    """Merge ``extra_body``, pick out the beta headers, drop transport and ignored params.

    Returns the builder and the raw conversation value (``messages`` or ``input``).
    """
    body = dict(params)
    extra = body.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(extra)
    headers = body.get("extra_headers")
    beta: dict[str, Any] = {}
    if isinstance(headers, Mapping):
        # Beta headers switch features on (and so change answers); other headers do not.
        beta = {str(k).lower(): v for k, v in headers.items() if str(k).lower().endswith("-beta")}
    stream = _truthy(body.get("stream"))
    conversation = body.get("messages", body.get("input"))
    ignored = set(ignore_params) - _CONVERSATION
    kept = {
        k: v for k, v in body.items() if k not in transport and k not in ignored and k not in _CONVERSATION
    }
    model = body.get("model")
    builder = _Builder(
        provider=provider,
        api=api,
        body=kept,
        beta=beta,
        stream=stream,
        model=model if isinstance(model, str) else str(canonical(model) or ""),
    )
    return builder, conversation


def _as_items(value: Any, builder: _Builder, name: str) -> list[dict[str, Any]]:
    """The conversation as a list of wire dicts; anything else blocks caching."""
    if not isinstance(value, list | tuple):
        # A generator would be consumed here and be empty for the SDK: the facade must
        # pass a list. Refuse to key it rather than guess.
        builder.block(f"{name} is not a list")
        return []
    items: list[dict[str, Any]] = []
    for raw in value:
        item = to_wire(raw)
        if not isinstance(item, Mapping):
            builder.block(f"unexpected {name} item of type {type(raw).__name__}")
            return []
        items.append(dict(item))
    return items


def _split(
    content: Any,
    *,
    text_types: frozenset[str],
    media_kinds: Mapping[str, str],
    allow_images: bool,
) -> _Parts:
    """Separate the text of a user message from its other parts."""
    if isinstance(content, str):
        return _Parts(content, [], [], None, False)
    if content is None:
        return _Parts("", [], [], None, False)
    if not isinstance(content, list | tuple):
        return _Parts("", [to_wire(content)], [], None, False)
    texts: list[str] = []
    rest: list[Any] = []
    media: list[Any] = []
    blocked: str | None = None
    tool_result = False
    for raw in content:
        part = to_wire(raw)
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in text_types and isinstance(part, Mapping):
            texts.append(str(part.get("text") or ""))
        elif kind in media_kinds:
            media_kind = media_kinds[str(kind)]
            if media_kind == "image" and allow_images:
                media.append(part)
            elif blocked is None:
                blocked = f"{media_kind} in the last user message"
        else:
            tool_result = tool_result or kind == "tool_result"
            rest.append(part)  # unknown parts: keyed exactly, never matched loosely
    return _Parts("\n".join(texts), rest, media, blocked, tool_result)


def _flatten_text(content: Any, text_types: frozenset[str]) -> Any:
    """``[{"type": "text", "text": s}]`` and ``s`` are the same message content."""
    if isinstance(content, list | tuple) and len(content) == 1:
        only = canonical(content[0])
        if isinstance(only, dict) and only.get("type") in text_types and set(only) <= {"type", "text"}:
            return only.get("text", "")
    return content


def _strip_key(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list | tuple):
        return [_strip_key(v, key) for v in value]
    return value


def _turns(
    items: list[dict[str, Any]],
    last_user: int,
    parts: _Parts | None,
    text_types: frozenset[str],
) -> list[Any]:
    """Every turn, with the matched text of the last user message replaced by a marker."""
    turns: list[Any] = []
    for i, item in enumerate(items):
        if "content" in item:
            item = {**item, "content": _flatten_text(item["content"], text_types)}
        if i == last_user and parts is not None:
            item = {**item, "content": {"$query": True, "parts": parts.rest + parts.media}}
        turns.append(item)
    return turns


_CHAT_TEXT = frozenset({"text"})
_CHAT_MEDIA = {"image_url": "image", "input_audio": "audio", "file": "file"}


def _question(
    b: _Builder,
    items: list[dict[str, Any]],
    last_user: int,
    text_types: frozenset[str],
    media_kinds: Mapping[str, str],
    allow_images: bool,
) -> _Parts | None:
    """The parts of the message whose text is matched (None when there is no user message:
    the request is then not cacheable)."""
    if last_user < 0:
        b.block("no user message")
        return None
    parts = _split(
        items[last_user].get("content"),
        text_types=text_types,
        media_kinds=media_kinds,
        allow_images=allow_images,
    )
    if parts.blocked:
        b.block(parts.blocked)
    return parts


def openai_chat_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_images: bool = False,
) -> RequestKey:
    """Key for ``client.chat.completions.create(**params)``."""
    try:
        return _openai_chat_key(params, ignore_params, allow_images)
    except Unkeyable as exc:
        return _unkeyable("openai", "chat", params, exc)


def _openai_chat_key(
    params: Mapping[str, Any], ignore_params: Iterable[str], allow_images: bool
) -> RequestKey:
    b, raw = _start("openai", "chat", params, _OPENAI_TRANSPORT, ignore_params)
    options = params.get("stream_options")
    stream_usage = b.stream and isinstance(options, Mapping) and _truthy(options.get("include_usage"))
    n = canonical(b.body.get("n"))
    if n is not None and n != 1:
        b.block("n>1")
    b.body.pop("n", None)  # n=1 is the default: same scope as no n
    modalities = canonical(b.body.get("modalities")) or []
    if "audio" in modalities or canonical(b.body.get("audio")) is not None:
        b.block("audio output")
    if canonical(b.body.get("tools")) or canonical(b.body.get("functions")):
        b.exact("tools present")
    items = _as_items(raw, b, "messages")
    last_user = max((i for i, m in enumerate(items) if m.get("role") == "user"), default=-1)
    parts = _question(b, items, last_user, _CHAT_TEXT, _CHAT_MEDIA, allow_images)
    if parts is not None:
        if last_user != len(items) - 1:
            b.exact(f"last message is from {items[-1].get('role')!s}")
        if parts.rest:
            b.exact("non-text parts in the last user message")
    return b.finish(
        _turns(items, last_user, parts, _CHAT_TEXT),
        parts.text if parts else "",
        stream_usage=stream_usage,
        media=parts.media if parts else (),
    )


_RESPONSES_TEXT = frozenset({"input_text"})
_RESPONSES_MEDIA = {"input_image": "image", "input_audio": "audio", "input_file": "file"}


def openai_responses_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_images: bool = False,
) -> RequestKey:
    """Key for ``client.responses.create(**params)``."""
    try:
        return _openai_responses_key(params, ignore_params, allow_images)
    except Unkeyable as exc:
        return _unkeyable("openai", "responses", params, exc)


def _openai_responses_key(
    params: Mapping[str, Any], ignore_params: Iterable[str], allow_images: bool
) -> RequestKey:
    b, raw = _start("openai", "responses", params, _OPENAI_TRANSPORT, ignore_params)
    if canonical(params.get("conversation")) is not None:
        b.block("server-side conversation state")
    if _truthy(params.get("background")):
        b.block("background response")
    if canonical(params.get("response_id")) is not None:
        b.block("resuming a stored response")
    if canonical(b.body.get("tools")):
        b.exact("tools present")
    modalities = canonical(b.body.get("modalities")) or []
    if "audio" in modalities:
        b.block("audio output")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else _as_items(raw, b, "input")
    for i, item in enumerate(items):
        # {"role": ..., "content": ...} and {"type": "message", ...} are the same item.
        if "role" in item and item.get("type") == "message":
            items[i] = {k: v for k, v in item.items() if k != "type"}
    last_user = max(
        (i for i, m in enumerate(items) if m.get("role") == "user" and "type" not in m),
        default=-1,
    )
    parts = _question(b, items, last_user, _RESPONSES_TEXT, _RESPONSES_MEDIA, allow_images)
    if parts is not None:
        if last_user != len(items) - 1:
            last = items[-1]
            b.exact(f"last input item is {last.get('type') or last.get('role')!s}")
        if parts.rest:
            b.exact("non-text parts in the last user message")
    return b.finish(
        _turns(items, last_user, parts, _RESPONSES_TEXT),
        parts.text if parts else "",
        media=parts.media if parts else (),
    )


_ANTHROPIC_TEXT = frozenset({"text"})
_ANTHROPIC_MEDIA = {"image": "image", "document": "file", "audio": "audio"}


def anthropic_messages_key(
    params: Mapping[str, Any],
    *,
    ignore_params: Iterable[str] = (),
    allow_images: bool = False,
) -> RequestKey:
    """Key for ``client.messages.create(**params)`` (and ``client.messages.stream``)."""
    try:
        return _anthropic_messages_key(params, ignore_params, allow_images)
    except Unkeyable as exc:
        return _unkeyable("anthropic", "messages", params, exc)


def _anthropic_messages_key(
    params: Mapping[str, Any], ignore_params: Iterable[str], allow_images: bool
) -> RequestKey:
    # cache_control marks prompt-cache breakpoints: billing, not the answer.
    params = _strip_key(params, "cache_control")
    b, raw = _start("anthropic", "messages", params, _ANTHROPIC_TRANSPORT, ignore_params)
    if "system" in b.body:
        b.body["system"] = _flatten_text(canonical(b.body["system"]), _ANTHROPIC_TEXT)
    if canonical(b.body.get("tools")):
        b.exact("tools present")
    items = _as_items(raw, b, "messages")

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
    parts = _question(b, items, last_user, _ANTHROPIC_TEXT, _ANTHROPIC_MEDIA, allow_images)
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
        _turns(items, last_user, parts, _ANTHROPIC_TEXT),
        parts.text if parts else "",
        media=parts.media if parts else (),
    )
