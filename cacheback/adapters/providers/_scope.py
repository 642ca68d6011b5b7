"""Cache keys for provider requests: the match text and the scope around it.

This module holds what the three APIs' key readers share; each reader lives with its
codec (``openai_chat``, ``openai_responses``, ``anthropic_messages``).

A request is split in two. ``query`` is the text of the last user message: the only part
matched semantically. ``scope`` is a hash of everything else that decides the answer
(provider, API, model, system prompt / instructions, every other turn, tools,
tool_choice, output format, the sampling and length parameters, reasoning/thinking
settings, beta headers). A cached answer is only ever served inside the same scope.

Rules (documented for users; see ``RequestKey.reason``):

* not cacheable: ``n > 1``; audio output; files or documents in the last user message;
  an image or audio part that cannot be read (bad base64) or ``allow_media=False``
  with one present; a server-side
  conversation (``conversation=``) or ``background=True`` (Responses API); no user
  message; values that cannot be keyed (e.g. a one-shot iterator of messages).
* exact-only (no semantic match, the whole request must repeat): tools or functions
  present; the last message is not the user's (a tool result, an assistant prefill).
* everything else: semantic within the scope. Images and audio in the last user message
  are keyed exactly (``_media``: the hash of their decoded bytes, a URL by its string) as
  part of the scope, so the text is matched semantically only next to the same media.

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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cacheback.core._types import LookupRequest

from ._common import Unkeyable, canonical, canonical_json, digest, to_wire
from ._media import MediaError, MediaPart, MediaReader, modality

SCOPE_VERSION = 1  # bump when canonicalisation changes: old entries then never match

_COMMON_TRANSPORT = frozenset(
    {"stream", "timeout", "extra_headers", "extra_query", "extra_body", "metadata", "service_tier"}
)
OPENAI_TRANSPORT = _COMMON_TRANSPORT | {
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
ANTHROPIC_TRANSPORT = _COMMON_TRANSPORT | {
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
    cacheable. ``media`` holds the image and audio parts of the last user message
    (their keys are part of ``scope``); ``modality`` names what the question carries.
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
    media: tuple[MediaPart, ...] = ()

    scope_base: str = ""  # the digest of everything in the scope but the media ids

    @property
    def modality(self) -> str:
        return modality(self.media)

    def with_media_ids(self, ids: Sequence[str]) -> RequestKey:
        """This key with its media keyed by ``ids`` (one per part, in order) instead of
        their own digests: a near-identical picture found by the media tier is keyed as
        the one it matched."""
        if len(ids) != len(self.media):
            raise ValueError("one id per media part")
        if not self.media or not self.cacheable:
            return self
        return replace(
            self, scope=media_scope(f"{self.provider}.{self.api}:{self.model}", self.scope_base, ids)
        )

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
class Parts:
    text: str
    rest: list[Any]  # non-text parts kept in the scope
    media: list[MediaPart]  # image/audio parts (their keys are kept in the scope)
    blocked: str | None  # a media kind that makes the request uncacheable
    tool_result: bool


@dataclass(slots=True)
class Builder:
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
        media: Iterable[MediaPart] = (),
    ) -> RequestKey:
        doc = {
            "v": SCOPE_VERSION,
            "provider": self.provider,
            "api": self.api,
            "params": self.body,
            "beta": self.beta,
            "turns": turns,
        }
        media = tuple(media)
        prefix = f"{self.provider}.{self.api}:{self.model}"
        try:
            base = digest(canonical_json(doc))
        except (Unkeyable, ValueError) as exc:
            self.block(f"unkeyable request: {exc}")
            base = "-"
        scope = media_scope(prefix, base, [m.digest for m in media])
        if self.blocked is None and not query.strip() and not self.exact_reasons:
            if media:  # an image or clip alone: the whole request must repeat
                self.exact("no text next to the media")
            else:
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
            media=media,
            scope_base=base,
        )


def media_scope(prefix: str, base: str, ids: Sequence[str]) -> str:
    """The scope: ``prefix`` and the digest of the rest, with the media ids folded in (a
    question without media keeps the scope it always had)."""
    if not ids:
        return f"{prefix}:{base}"
    return f"{prefix}:{digest(base + '|' + '|'.join(ids))}"


def unkeyable(provider: str, api: str, params: Mapping[str, Any], exc: Exception) -> RequestKey:
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
        stream=truthy(params.get("stream")),
    )


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return bool(canonical(value))
    except Unkeyable:
        return False


def start(
    provider: str,
    api: str,
    params: Mapping[str, Any],
    transport: frozenset[str],
    ignore_params: Iterable[str],
) -> tuple[Builder, Any]:
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
    stream = truthy(body.get("stream"))
    conversation = body.get("messages", body.get("input"))
    ignored = set(ignore_params) - _CONVERSATION
    kept = {
        k: v for k, v in body.items() if k not in transport and k not in ignored and k not in _CONVERSATION
    }
    model = body.get("model")
    builder = Builder(
        provider=provider,
        api=api,
        body=kept,
        beta=beta,
        stream=stream,
        model=model if isinstance(model, str) else str(canonical(model) or ""),
    )
    return builder, conversation


def as_items(value: Any, builder: Builder, name: str) -> list[dict[str, Any]]:
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
    media_kinds: Mapping[str, MediaReader | str],
    allow_media: bool,
) -> Parts:
    """Separate the text of a user message from its other parts."""
    if isinstance(content, str):
        return Parts(content, [], [], None, False)
    if content is None:
        return Parts("", [], [], None, False)
    if not isinstance(content, list | tuple):
        return Parts("", [to_wire(content)], [], None, False)
    texts: list[str] = []
    rest: list[Any] = []
    media: list[MediaPart] = []
    blocked: str | None = None
    tool_result = False
    for raw in content:
        part = to_wire(raw)
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in text_types and isinstance(part, Mapping):
            texts.append(str(part.get("text") or ""))
        elif kind in media_kinds and isinstance(part, Mapping):
            reader = media_kinds[str(kind)]
            if isinstance(reader, str) or not allow_media:
                what = reader if isinstance(reader, str) else str(kind)
                blocked = blocked or f"{what} in the last user message"
                continue
            try:
                media.append(reader(part))
            except MediaError as exc:
                blocked = blocked or f"unreadable media: {exc}"
        else:
            tool_result = tool_result or kind == "tool_result"
            rest.append(part)  # unknown parts: keyed exactly, never matched loosely
    return Parts("\n".join(texts), rest, media, blocked, tool_result)


def flatten_text(content: Any, text_types: frozenset[str]) -> Any:
    """``[{"type": "text", "text": s}]`` and ``s`` are the same message content."""
    if isinstance(content, list | tuple) and len(content) == 1:
        only = canonical(content[0])
        if isinstance(only, dict) and only.get("type") in text_types and set(only) <= {"type", "text"}:
            return only.get("text", "")
    return content


def strip_key(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {k: strip_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list | tuple):
        return [strip_key(v, key) for v in value]
    return value


def turns(
    items: list[dict[str, Any]],
    last_user: int,
    parts: Parts | None,
    text_types: frozenset[str],
) -> list[Any]:
    """Every turn, with the matched text of the last user message replaced by a marker."""
    turns: list[Any] = []
    for i, item in enumerate(items):
        if "content" in item:
            item = {**item, "content": flatten_text(item["content"], text_types)}
        if i == last_user and parts is not None:
            media = [m.key() for m in parts.media]
            item = {**item, "content": {"$query": True, "parts": parts.rest + media}}
        turns.append(item)
    return turns


def question(
    b: Builder,
    items: list[dict[str, Any]],
    last_user: int,
    text_types: frozenset[str],
    media_kinds: Mapping[str, MediaReader | str],
    allow_media: bool,
) -> Parts | None:
    """The parts of the message whose text is matched (None when there is no user message:
    the request is then not cacheable)."""
    if last_user < 0:
        b.block("no user message")
        return None
    parts = _split(
        items[last_user].get("content"),
        text_types=text_types,
        media_kinds=media_kinds,
        allow_media=allow_media,
    )
    if parts.blocked:
        b.block(parts.blocked)
    return parts


def guarded(
    provider: str, api: str, params: Mapping[str, Any], build: Callable[[], RequestKey]
) -> RequestKey:
    """``build()``, or a not-cacheable key when a value in ``params`` cannot be keyed."""
    try:
        return build()
    except Unkeyable as exc:
        return unkeyable(provider, api, params, exc)
