"""``Codec``: everything the cache knows about one provider API, in one place.

The SDK clients and the proxy both go through a codec: the clients with SDK objects (the
``rebuild``/``open_stream``/``replay`` members, which import the SDK on first use), the proxy
with JSON bodies (``render``/``events``/``sse``). One codec per API lives in its own module
(``openai_chat``, ``openai_responses``, ``anthropic_messages``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import httpx2

from ._common import CachedAnswer, StreamAccumulator, Verdict, dumps, to_wire
from ._scope import RequestKey
from ._stream_replay import join_url, sse_response

ApiName = Literal["chat", "responses", "messages"]
ProviderName = Literal["openai", "anthropic"]


class KeyRequest(Protocol):
    """Request kwargs or a JSON body → how the cache keys it (match text, scope, cacheability)."""

    def __call__(
        self,
        params: Mapping[str, Any],
        *,
        ignore_params: Iterable[str] = (),
        allow_media: bool = True,
    ) -> RequestKey: ...


_Out = TypeVar("_Out", covariant=True)


class Render(Protocol[_Out]):
    """The response serving ``text``: from its stored ``payload`` when it carries the same
    text, else built around ``text``; ``model``/``request`` are the caller's. ``keep_ids``:
    a stored provider response replayed (a hit, a coalesced copy) keeps the provider's
    ids; without it (a synthesised answer) the ids are new."""

    def __call__(
        self,
        text: str,
        payload: bytes | None = None,
        model: str | None = None,
        request: Mapping[str, Any] | None = None,
        *,
        keep_ids: bool = False,
    ) -> _Out: ...


class Events(Protocol):
    """The stream events (wire dicts) a live stream of ``response`` would send.
    ``include_usage`` only matters to chat completions (``stream_options.include_usage``);
    the other APIs always carry usage in their closing events."""

    def __call__(
        self, response: object, include_usage: bool = False, chunk_chars: int = 24, /
    ) -> list[dict[str, Any]]: ...


OpenStream = Callable[[Any, httpx2.Response], Any]
"""The SDK's own stream (``Stream``/``AsyncStream``, by ``client``) over an HTTP response of
server-sent events, built as the SDK builds it after a call (``_request_id`` None)."""


class SDKFunction:
    """A function of an SDK-typed module (``_openai_sdk``, ``_anthropic_sdk``), imported on
    first call: the codecs load without either SDK, and installing one SDK is enough."""

    __slots__ = ("_function", "_module", "_name")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name
        self._function: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = self._function
        if function is None:
            module = importlib.import_module(f"{__package__}.{self._module}")
            function = self._function = getattr(module, self._name)
        return function(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class Codec:
    name: ApiName
    provider: ProviderName
    path: str  # below the provider's base URL, as the SDK and the proxy call it
    key: KeyRequest
    text: Callable[[object], str]  # the answer text of a response
    finish_reason: Callable[[object], str | None]  # why the answer ended (API's own word)
    verdict: Callable[[object], Verdict]  # may this response be cached?
    usage: Callable[[object], dict[str, Any]]  # the engine's usage record of a response
    event_usage: Callable[[object], dict[str, Any]]  # ... of one stream event (merge in order)
    accumulator: Callable[[], StreamAccumulator]  # a streamed miss → the answer to cache
    render: Render[dict[str, Any]]  # → wire dict
    events: Events  # wire dict → stream event dicts
    rebuild: Render[Any]  # → the SDK's response object
    open_stream: OpenStream  # SSE over HTTP → the SDK's stream
    typed_events: bool  # every SSE event carries an ``event:`` line (not chat)
    stream_end: bytes  # what follows the last event (chat: ``data: [DONE]``)

    @property
    def label(self) -> str:
        """``openai.chat``, ``openai.responses``, ``anthropic.messages``."""
        return f"{self.provider}.{self.name}"

    def answer(self, response: object) -> CachedAnswer | None:
        """What to store for a (non-stream) response, or None when it must not be cached."""
        if not self.verdict(response):
            return None
        return CachedAnswer(self.text(response), dumps(to_wire(response)))

    def event_bytes(self, event: Mapping[str, Any]) -> bytes:
        """One event as server-sent bytes. Typed events carry an ``event:`` line (the
        Anthropic SDK drops events without one)."""
        head = b"event: " + str(event["type"]).encode() + b"\n" if self.typed_events else b""
        return head + b"data: " + dumps(event) + b"\n\n"

    def sse_chunks(self, response: object, include_usage: bool = False, chunk_chars: int = 24) -> list[bytes]:
        """A whole answer as the server-sent events of a live stream, one chunk per event."""
        chunks = [self.event_bytes(e) for e in self.events(response, include_usage, chunk_chars)]
        if self.stream_end:
            chunks.append(self.stream_end)
        return chunks

    def sse(self, response: object, include_usage: bool = False) -> bytes:
        """A whole answer as the body of a stream (a replayed hit)."""
        return b"".join(self.sse_chunks(response, include_usage))

    def replay(
        self,
        client: Any,
        response: object,
        include_usage: bool = False,
        *,
        chunk_chars: int = 24,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The SDK's own stream replaying ``response`` for ``client``: the SDK's SSE decoder
        parses the replay, so it can only yield what a live stream would."""
        chunks = self.sse_chunks(response, include_usage, chunk_chars)
        url = join_url(client.base_url, self.path)
        return self.open_stream(client, sse_response(chunks, url=url, headers=headers))
