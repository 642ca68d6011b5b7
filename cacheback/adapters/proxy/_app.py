"""The proxy's ASGI app (Starlette): provider-compatible endpoints in front of the engine.

One ``AsyncEngine`` per process, opened in the lifespan and closed (persister flushed)
after uvicorn has let in-flight requests finish. A request is authenticated, parsed and
keyed by the provider codecs, then sent through the engine with a ``_Handler`` that
knows how to call the provider (httpx) and how to render a synthesised answer.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import structlog
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...engine._engine import AsyncEngine
from ...engine._errors import CachebackError
from ...engine._job import Commit, Job, Reply
from ...engine._ports import LLM, Embedder, Store
from ...engine._types import Outcome, Tier
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
from ._auth import Authenticator, Caller
from ._config import CONFIG_ENV, ProxyConfig
from ._errors import Provider, ProxyError, redact, stream_error_event
from ._metrics import Metrics
from ._upstream import (
    Buffered,
    RelayedStream,
    StreamingBody,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    encode_headers,
    forward_headers,
    response_headers,
)

log = structlog.get_logger("cacheback.proxy")

ApiName = Literal["chat", "responses", "messages"]
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_NO_SIMILARITY = "none"


# --- the three cached APIs -------------------------------------------------------------------


class _Accumulator(Protocol):
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
class _Api:
    name: ApiName
    provider: Provider
    path: str  # appended to the provider's base URL
    key: Callable[..., RequestKey]
    verdict: Callable[[object], Verdict]
    answer: Callable[[object], CachedAnswer]
    render: Callable[..., dict[str, Any]]
    events: Callable[..., list[dict[str, Any]]]  # a rendered answer as live stream events
    accumulator: Callable[[], _Accumulator]
    usage: UsageTap  # from a complete response
    event_usage: UsageTap  # from one stream event

    def event_bytes(self, event: Mapping[str, Any]) -> bytes:
        data = _dumps(event)
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


CHAT = _Api(
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
RESPONSES = _Api(
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
MESSAGES = _Api(
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


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _safe_json(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe_json(v) for v in value]
    return value


# --- request parsing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Controls:
    """Per-request cache controls, from ``X-Cacheback-*`` headers (never sent upstream)."""

    bypass: bool = False
    no_store: bool = False
    ttl: float | None = None
    namespace: str | None = None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_NS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _flag(headers: Headers, name: str) -> bool:
    raw = headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ProxyError(400, f"{name} must be true or false, not {raw!r}.", code="invalid_cacheback_header")


def parse_controls(headers: Headers) -> Controls:
    ttl: float | None = None
    raw_ttl = headers.get("x-cacheback-ttl")
    if raw_ttl is not None:
        try:
            ttl = float(raw_ttl)
        except ValueError:
            ttl = math.nan
        if not math.isfinite(ttl) or ttl <= 0:
            raise ProxyError(
                400, "X-Cacheback-TTL must be a positive number of seconds.", code="invalid_cacheback_header"
            )
    namespace = headers.get("x-cacheback-namespace")
    if namespace is not None and (not 0 < len(namespace) <= 64 or not set(namespace) <= _NS_CHARS):
        raise ProxyError(
            400,
            "X-Cacheback-Namespace must be 1-64 characters of A-Z a-z 0-9 . _ -",
            code="invalid_cacheback_header",
        )
    return Controls(
        bypass=_flag(headers, "x-cacheback-bypass"),
        no_store=_flag(headers, "x-cacheback-no-store"),
        ttl=ttl,
        namespace=namespace,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProxyError(
            413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ProxyError(
                    413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large"
                )
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ProxyError(400, "The client went away while sending the body.") from exc
    return b"".join(chunks)


def _type_name(value: object) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _expect(ok: bool, param: str, expected: str, value: object) -> None:
    if not ok:
        raise ProxyError(
            400,
            f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
            code="invalid_type",
            param=param,
        )


_INT_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "top_k", "seed")
_NUM_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def parse_body(raw: bytes, api: _Api) -> dict[str, Any]:
    """The JSON body, with the types the cache relies on checked (400 otherwise)."""
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise ProxyError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    _expect(isinstance(body, dict), "body", "an object", body)
    assert isinstance(body, dict)
    model = body.get("model")
    if model is None:
        raise ProxyError(
            400, "You must provide a model parameter.", code="missing_required_parameter", param="model"
        )
    _expect(isinstance(model, str) and bool(model), "model", "a non-empty string", model)
    stream = body.get("stream")
    _expect(stream is None or isinstance(stream, bool), "stream", "a boolean", stream)
    for name in _INT_PARAMS:
        v = body.get(name)
        _expect(v is None or (isinstance(v, int) and not isinstance(v, bool)), name, "an integer", v)
    for name in _NUM_PARAMS:
        v = body.get(name)
        _expect(v is None or (isinstance(v, int | float) and not isinstance(v, bool)), name, "a number", v)
    if api.name == "responses":
        value = body.get("input")
        _expect(value is None or isinstance(value, str | list), "input", "a string or an array", value)
        return body
    messages = body.get("messages")
    if messages is None:
        raise ProxyError(
            400, "You must provide a messages parameter.", code="missing_required_parameter", param="messages"
        )
    _expect(isinstance(messages, list), "messages", "an array", messages)
    for i, message in enumerate(messages):
        _expect(isinstance(message, dict), f"messages[{i}]", "an object", message)
        role = message.get("role")
        _expect(isinstance(role, str), f"messages[{i}].role", "a string", role)
        content = message.get("content")
        _expect(
            content is None or isinstance(content, str | list),
            f"messages[{i}].content",
            "a string or an array",
            content,
        )
    return body


def _response(
    status: int, body: bytes, headers: Sequence[tuple[str, str]] = (), media_type: str = _JSON
) -> Response:
    resp = Response(body, status_code=status)
    has_type = False
    extra: list[tuple[str, str]] = []
    for k, v in headers:
        if k.lower() == "content-type":
            has_type = True
        extra.append((k, v))
    if not has_type:
        extra.append(("content-type", media_type))
    resp.raw_headers.extend(encode_headers(extra))
    return resp


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer the proxy wrote itself (synthesis)."""

    body: bytes
    media_type: str


# A one-word stand-in for the answer text: rendering it through the codecs' stream
# builders gives the exact event shapes of a live stream, split around its one delta.
_MARKER = "cacheback-synthesis-text-marker"


def _swap(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return text if value == _MARKER else value
    if isinstance(value, dict):
        return {k: _swap(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, text) for v in value]
    return value


class SynthesisStream(StreamingBody):
    """A synthesized answer streamed as the cheap model produces it, framed exactly like
    the provider's own stream (the events of ``api.events``, one delta per piece)."""

    def __init__(self, api: _Api, template: list[dict[str, Any]], deltas: AsyncIterator[str]) -> None:
        super().__init__(200, (), _SSE)
        self._api = api
        self._deltas = deltas
        at = next(i for i, e in enumerate(template) if _MARKER in json.dumps(e))
        self._prefix, self._delta, self._suffix = template[:at], template[at], template[at + 1 :]
        self._seq = 0

    def _event(self, event: dict[str, Any], text: str) -> bytes:
        out = _swap(event, text)
        if "sequence_number" in out:
            out["sequence_number"] = self._seq
        self._seq += 1
        return self._api.event_bytes(out)

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._prefix:
            yield self._event(event, "")
        parts: list[str] = []
        try:
            async for piece in self._deltas:
                if piece:
                    parts.append(piece)
                    yield self._event(self._delta, piece)
        except Exception as exc:
            log.warning("synthesis stream broke", error=type(exc).__name__)
            yield stream_error_event(
                self._api.provider, self._api.name, "The answer stream broke.", "api_error"
            )
            return
        text = "".join(parts)
        for event in self._suffix:
            yield self._event(event, text)
        yield self._api.stream_end

    async def finished(self, completed: bool) -> None:
        aclose = getattr(self._deltas, "aclose", None)
        if aclose is not None:
            await aclose()


class _Tap:
    """Feeds a relayed stream's events to the accumulator and the usage record."""

    def __init__(self, api: _Api, usage: dict[str, Any]) -> None:
        self.acc = api.accumulator()
        self._usage = api.event_usage
        self.usage = usage

    def feed(self, event: Any) -> None:
        self.acc.feed(event)
        if isinstance(event, Mapping):
            self._usage(event, self.usage)

    def fail(self, reason: str) -> None:
        self.acc.fail(reason)


# --- per-request handler for the engine ------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    api: _Api
    body: dict[str, Any]
    raw: bytes
    url: str
    headers: list[tuple[str, str]]
    key: RequestKey

    def render(self, text: str, payload: bytes | None) -> dict[str, Any]:
        return self.api.render(text, payload, model=self.body.get("model"), request=self.body)


class _Handler:
    """The engine's ``TierHandler`` for one proxied call."""

    def __init__(self, proxy: Proxy, call: _Call) -> None:
        self._proxy = proxy
        self._call = call

    @property
    def streaming(self) -> bool:
        return self._call.key.stream

    async def upstream(self, commit: Commit) -> Reply:
        c = self._call
        up = self._proxy.upstream
        if c.key.stream:
            resp = await up.open("POST", c.url, c.headers, c.raw)
            usage: dict[str, Any] = {}  # filled in place as the stream goes (engine contract)
            tap = _Tap(c.api, usage)

            def done(ok: bool) -> None:
                if not ok:
                    return
                answer, _ = tap.acc.finish()
                if answer is not None:
                    commit(answer.text, answer.payload)

            stream = RelayedStream(
                resp,
                provider=c.api.provider,
                api=c.api.name,
                tap=tap,
                on_done=done,
                on_error=lambda kind: self._proxy.metrics.upstream_error(c.api.provider, kind),
            )
            return Reply(response=stream, deferred=True, usage=usage)
        buffered = await up.call("POST", c.url, c.headers, c.raw)
        try:
            data = json.loads(buffered.body)
        except (ValueError, UnicodeDecodeError):
            return Reply(response=buffered)
        if not isinstance(data, dict):
            return Reply(response=buffered)
        usage = {}
        c.api.usage(data, usage)
        if c.api.verdict(data):
            # The provider's own bytes are the payload replayed on a hit.
            return Reply(
                response=buffered, answer=c.api.answer(data).text, payload=buffered.body, usage=usage
            )
        return Reply(response=buffered, usage=usage)

    async def synthesized(self, text: str | None, stream: Any | None, usage: dict[str, int]) -> Reply:
        c = self._call
        if c.key.stream and stream is not None:
            template = c.api.events(c.render(_MARKER, None), c.key.stream_usage)
            return Reply(response=SynthesisStream(c.api, template, stream), usage=usage)
        if text is None and stream is not None:
            text = "".join([piece async for piece in stream])
        data = c.render(text or "", None)
        if c.key.stream:
            return Reply(response=Rendered(c.api.sse(data, c.key.stream_usage), _SSE), usage=usage)
        return Reply(response=Rendered(_dumps(data), _JSON), usage=usage)


def cache_headers(
    tier: str, *, hit: bool = False, synthesized: bool = False, similarity: float | None = None
) -> list[tuple[str, str]]:
    return [
        ("x-cacheback-hit", "true" if hit else "false"),
        ("x-cacheback-synthesized", "true" if synthesized else "false"),
        ("x-cacheback-tier", tier),
        ("x-cacheback-similarity", _NO_SIMILARITY if similarity is None else f"{similarity:.4f}"),
    ]


def _outcome_headers(outcome: Outcome, job: Job | None) -> list[tuple[str, str]]:
    tier = outcome.tier
    out = cache_headers(
        tier.value,
        hit=tier.is_hit,
        synthesized=tier is Tier.SYNTHESIS,
        similarity=None if outcome.similarity is None else float(outcome.similarity),
    )
    if tier.is_hit and outcome.entry is not None:
        out.append(("x-cacheback-entry-id", str(outcome.entry.id)))
    if job is not None and job.trace.get("coalesced"):
        out.append(("x-cacheback-coalesced", "true"))
    if tier is Tier.BYPASS and job is not None and job.request.bypass_reason:
        out.append(("x-cacheback-reason", _header_safe(job.request.bypass_reason)))
    if job is not None and job.degraded:
        out.append(("x-cacheback-degraded", _header_safe(job.degraded)))
    return out


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:200]


class CacheHeadersMiddleware:
    """Guarantees the four ``X-Cacheback-*`` headers on every HTTP response (health,
    errors and 404s included); responses that set them keep theirs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k for k, _ in headers}
                for name, value in _DEFAULTS:
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


_DEFAULTS = [(k.encode(), v.encode()) for k, v in cache_headers("none")]


# --- the proxy ---------------------------------------------------------------------------------------


class Proxy:
    """State shared by every request of one process."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        engine: AsyncEngine | None = None,
        embedder: Embedder | str | None = "auto",
        llm: LLM | None = None,
        store: Store | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.auth = Authenticator(config)
        self.metrics = Metrics()
        self.settings = config.settings()
        self._engine_arg = engine
        self._embedder = embedder
        self._llm = llm
        self._store = store
        self._transport = transport
        self._engine: AsyncEngine | None = None
        self._upstream: Upstream | None = None
        self.ready = False

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise CachebackError("the proxy is not started")
        return self._engine

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise CachebackError("the proxy is not started")
        return self._upstream

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            self._upstream = await Upstream.start(self.config, self._transport)
            stack.push_async_callback(self._upstream.aclose)
            engine = self._engine_arg
            if engine is None:
                llm = self._llm
                if llm is None and self.settings.synthesis_mode != "off":
                    from ..llm import llm_from_settings

                    # Built here rather than by the engine: this refuses a synthesis
                    # endpoint that is the proxy itself (every synthesis would loop).
                    address = f"http://{self.config.host}:{self.config.port}"
                    llm = llm_from_settings(self.settings, proxy_address=address)
                if llm is not None:
                    stack.push_async_callback(_aclose, llm)
                engine = AsyncEngine(self.settings, store=self._store, embedder=self._embedder, llm=llm)
            if not engine.running:
                # Exits before the upstream client closes: pending fills are flushed first.
                await stack.enter_async_context(engine)
            self._engine = engine
            self.ready = True
            log.info(
                "proxy ready",
                worker=os.getpid(),
                auth="proxy-keys" if self.config.auth_required else "caller-keys",
                embedder=engine.embedder.name if engine.embedder is not None else None,
            )
            try:
                yield
            finally:
                self.ready = False
                log.info("proxy draining", worker=os.getpid())

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, provider: Provider, err: ProxyError, tier: str = "error") -> Response:
        return _response(err.status, err.body(provider), cache_headers(tier))

    def _url(self, provider: Provider, path: str, query: str) -> str:
        base = self.config.openai_base_url if provider == "openai" else self.config.anthropic_base_url
        return base + path + (f"?{query}" if query else "")

    def _failure(self, provider: Provider, exc: BaseException, headers: list[tuple[str, str]]) -> Response:
        """An upstream failure in the provider's format (passed through when it has one)."""
        if isinstance(exc, UpstreamError):
            self.metrics.upstream_error(provider, str(exc.status))
            log.info("upstream error", provider=provider, status=exc.status)
            return _response(exc.status, redact(exc.body, self.auth.secrets), [*exc.headers, *headers])
        if isinstance(exc, UpstreamTimeout):
            self.metrics.upstream_error(provider, "timeout")
            log.warning("upstream timeout", provider=provider)
            err = ProxyError(504, "The upstream provider did not answer in time.", code="upstream_timeout")
            return _response(504, err.body(provider), headers)
        if isinstance(exc, UpstreamUnavailable):
            self.metrics.upstream_error(provider, "unreachable")
            log.warning("upstream unreachable", provider=provider, error=type(exc.__cause__).__name__)
            err = ProxyError(502, "The upstream provider could not be reached.", code="upstream_unreachable")
            return _response(502, err.body(provider), headers)
        self.metrics.upstream_error(provider, "internal")
        log.error("proxy failure", provider=provider, error=type(exc).__name__)
        err = ProxyError(500, "The proxy failed to handle the request.", code="internal_error")
        return _response(500, err.body(provider), headers)

    # -- cached APIs ---------------------------------------------------------------------------

    def endpoint(self, api: _Api) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            t0 = time.perf_counter()
            self.metrics.in_flight += 1
            tier = "error"
            status = 500
            try:
                response, tier = await self._serve(request, api)
                status = response.status_code
                return response
            finally:
                self.metrics.in_flight -= 1
                self.metrics.observe(api.name, tier, status, time.perf_counter() - t0)

        return handle

    async def _serve(self, request: Request, api: _Api) -> tuple[Response, str]:
        headers = request.headers
        try:
            caller = self.auth.authenticate(headers, api.provider)
            raw = await read_body(request, self.config.max_body_bytes)
            body = parse_body(raw, api)
            controls = parse_controls(headers)
        except ProxyError as err:
            return self._error(api.provider, err), "error"
        key, lookup = self._lookup(api, body, headers, caller, controls)
        call = _Call(
            api=api,
            body=body,
            raw=raw,
            url=self._url(api.provider, api.path, request.url.query),
            headers=forward_headers(headers, caller.upstream_auth),
            key=key,
        )
        handler = _Handler(self, call)
        try:
            job = await self.engine.run(lookup, handler)
        except CachebackError as exc:
            # The cache itself is unusable (closing, broken): answer around it.
            log.warning("cache unavailable; passing through", error=type(exc).__name__)
            return await self._around_cache(handler, api, call)
        return self._deliver(api, call, job)

    def _lookup(
        self, api: _Api, body: dict[str, Any], headers: Headers, caller: Caller, controls: Controls
    ) -> tuple[RequestKey, Any]:
        # Beta headers switch features on, so they are part of the scope.
        beta = {k: v for k, v in headers.items() if k.endswith("-beta")}
        params = {**body, "extra_headers": beta} if beta else body
        key = api.key(params, ignore_params=self.config.ignore_params)
        namespace = caller.tenant if controls.namespace is None else f"{caller.tenant}/{controls.namespace}"
        lookup = key.lookup_request(
            namespace,
            read=not controls.bypass,
            store=not (controls.bypass or controls.no_store),
            ttl=controls.ttl,
            want_synthesis=self.settings.synthesis_mode != "off",
        )
        if controls.bypass:
            lookup.cacheable = False
            lookup.bypass_reason = "bypass requested"
        return key, lookup

    async def _around_cache(self, handler: _Handler, api: _Api, call: _Call) -> tuple[Response, str]:
        headers = cache_headers(Tier.BYPASS.value)
        headers.append(("x-cacheback-degraded", "engine"))
        try:
            reply = await handler.upstream(lambda answer, payload: None)
        except Exception as exc:
            return self._failure(api.provider, exc, headers), Tier.BYPASS.value
        return self._from_reply(reply, headers), Tier.BYPASS.value

    def _deliver(self, api: _Api, call: _Call, job: Job) -> tuple[Response, str]:
        outcome = job.outcome
        if job.error is not None:
            tier = Tier.UPSTREAM.value if job.request.cacheable else Tier.BYPASS.value
            return self._failure(api.provider, job.error, cache_headers(tier)), tier
        if outcome is None:
            return self._failure(api.provider, RuntimeError("no outcome"), cache_headers("error")), "error"
        tier = outcome.tier
        headers = _outcome_headers(outcome, job)
        if tier is Tier.BLOCKED:
            reason = outcome.negative.reason if outcome.negative is not None else "blocked"
            err = ProxyError(
                403,
                f"This request was blocked by the cache's negative list: {reason}",
                code="blocked_by_negative_cache",
                kind="permission_error",
            )
            headers.append(("x-cacheback-reason", _header_safe(reason)))
            return _response(403, err.body(api.provider), headers), tier.value
        if tier.is_hit and outcome.entry is not None:
            entry = outcome.entry
            data = call.render(entry.answer, entry.payload)
            if call.key.stream:
                return _response(200, api.sse(data, call.key.stream_usage), headers, _SSE), tier.value
            return _response(200, _dumps(data), headers), tier.value
        if job.reply is None:
            return self._failure(api.provider, RuntimeError("no reply"), headers), tier.value
        return self._from_reply(job.reply, headers), tier.value

    def _from_reply(self, reply: Reply, headers: list[tuple[str, str]]) -> Response:
        r = reply.response
        if isinstance(r, StreamingBody):
            r.add_headers(headers)
            return r
        if isinstance(r, Buffered):
            return _response(r.status, r.body, [*r.headers, *headers])
        if isinstance(r, Rendered):
            return _response(200, r.body, headers, r.media_type)
        raise TypeError(f"unexpected reply {type(r).__name__}")

    # -- pass-through ------------------------------------------------------------------------

    async def passthrough(self, request: Request) -> Response:
        """Any other ``/v1/*`` call, relayed as is (streamed both ways, not cached)."""
        t0 = time.perf_counter()
        path = request.url.path
        anthropic = (
            path.startswith(("/v1/messages", "/v1/complete")) or "anthropic-version" in request.headers
        )
        provider: Provider = "anthropic" if anthropic else "openai"
        headers = cache_headers(Tier.BYPASS.value)
        status = 500
        self.metrics.in_flight += 1
        try:
            try:
                caller = self.auth.authenticate(request.headers, provider)
                raw = await read_body(request, self.config.max_body_bytes)
            except ProxyError as err:
                status = err.status
                return self._error(provider, err)
            upstream_path = path[len("/v1") :] if provider == "openai" else path
            out_headers = forward_headers(request.headers, caller.upstream_auth)
            # The body is relayed still encoded: only offer what the caller can decode.
            out_headers.append(("accept-encoding", request.headers.get("accept-encoding", "identity")))
            try:
                resp = await self.upstream.open(
                    request.method,
                    self._url(provider, upstream_path, request.url.query),
                    out_headers,
                    raw or None,
                    raise_for_status=False,
                )
            except (UpstreamTimeout, UpstreamUnavailable) as exc:
                response = self._failure(provider, exc, headers)
                status = response.status_code
                return response
            status = resp.status_code
            if status >= 400:
                # Errors are small: read them whole, so that key-shaped text is scrubbed.
                self.metrics.upstream_error(provider, str(status))
                try:
                    body = await resp.aread()
                except httpx.HTTPError:
                    body = b""
                finally:
                    await resp.aclose()
                error_headers = response_headers(resp.headers, reencoded=True)
                return _response(status, redact(body, self.auth.secrets), [*error_headers, *headers])
            stream = RelayedStream(resp, provider=provider, api="other", raw=True)
            stream.add_headers(headers)
            return stream
        finally:
            self.metrics.in_flight -= 1
            self.metrics.observe("passthrough", Tier.BYPASS.value, status, time.perf_counter() - t0)

    # -- cache management ----------------------------------------------------------------------

    def _provider_of(self, request: Request) -> Provider:
        return "anthropic" if "anthropic-version" in request.headers else "openai"

    async def stats(self, request: Request) -> Response:
        provider = self._provider_of(request)
        if self.config.auth_required:
            try:
                self.auth.authenticate(request.headers, provider)
            except ProxyError as err:
                return self._error(provider, err)
        stats = await self.engine.get_stats()
        stats["proxy"] = {
            "worker": os.getpid(),
            "in_flight": self.metrics.in_flight,
            "requests": sum(self.metrics.requests.values()),
            "auth": "proxy-keys" if self.config.auth_required else "caller-keys",
        }
        return _response(200, _dumps(_safe_json(stats)))

    async def report_wrong_hit(self, request: Request) -> Response:
        """Remove an entry that served a wrong answer (only entries of the caller's tenant)."""
        provider = self._provider_of(request)
        try:
            caller = self.auth.authenticate(request.headers, provider)
            raw = await read_body(request, 64 * 1024)
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError):
                raise ProxyError(
                    400, "We could not parse the JSON body of your request.", code="invalid_json"
                ) from None
            entry_id = body.get("entry_id") if isinstance(body, dict) else None
            _expect(
                isinstance(entry_id, int) and not isinstance(entry_id, bool),
                "entry_id",
                "an integer",
                entry_id,
            )
            assert isinstance(entry_id, int)
        except ProxyError as err:
            return self._error(provider, err)
        engine = self.engine
        entry = await engine.store.get(entry_id) if engine.store is not None else None
        owner = entry.metadata.get("namespace") if entry is not None else None
        if not isinstance(owner, str) or not (
            owner == caller.tenant or owner.startswith(caller.tenant + "/")
        ):
            # Another tenant's entry is reported exactly like a missing one: no probing.
            missing = ProxyError(
                404,
                f"No cache entry {entry_id} was served to you.",
                code="entry_not_found",
                param="entry_id",
                kind="not_found_error",
            )
            return self._error(provider, missing)
        removed = await engine.report_wrong_hit(entry_id)
        return _response(200, _dumps({"entry_id": entry_id, "removed": removed}))

    async def health(self, request: Request) -> Response:
        engine = self._engine
        ready = self.ready and engine is not None and engine.running and engine.store is not None
        body: dict[str, Any] = {
            "status": "ok" if ready else "unavailable",
            "live": True,
            "ready": ready,
            "worker": os.getpid(),
        }
        if engine is not None:
            body["embedder"] = engine.embedder.name if engine.embedder is not None else None
            body["store"] = type(engine.store).__name__ if engine.store is not None else None
        return _response(200 if ready else 503, _dumps(body))

    async def metrics_endpoint(self, request: Request) -> Response:
        engine = self._engine
        stats: dict[str, Any] | None = None
        queues: dict[str, int] = {}
        if engine is not None and engine.running:
            try:
                stats = await engine.get_stats()
                queues = engine.queue_depths()
            except CachebackError:
                stats = None
        text = self.metrics.render(stats, queues)
        return _response(200, text.encode(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _aclose(resource: object) -> None:
    aclose = getattr(resource, "aclose", None)
    if aclose is not None:
        await aclose()


def create_app(
    config: ProxyConfig | None = None,
    *,
    engine: AsyncEngine | None = None,
    embedder: Embedder | str | None = "auto",
    llm: LLM | None = None,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The proxy as an ASGI app.

    ``config`` defaults to the environment (``ProxyConfig.from_env()``). ``engine`` is used
    as given (opened and closed by the app only if it is not running yet); otherwise one
    is built from the config with ``embedder`` (``"auto"``: the default MiniLM), ``llm``
    (the synthesis model, closed with the app; None: the one the ``CACHEBACK_SYNTHESIS_*``
    settings describe, if any) and ``store`` (None: the embedded one).
    """
    proxy = Proxy(
        config or ProxyConfig.from_env(),
        engine=engine,
        embedder=embedder,
        llm=llm,
        store=store,
        transport=transport,
    )
    routes = [
        Route("/v1/chat/completions", proxy.endpoint(CHAT), methods=["POST"]),
        Route("/v1/responses", proxy.endpoint(RESPONSES), methods=["POST"]),
        Route("/v1/messages", proxy.endpoint(MESSAGES), methods=["POST"]),
        Route("/v1/cache/stats", proxy.stats, methods=["GET"]),
        Route("/v1/cache/report-wrong-hit", proxy.report_wrong_hit, methods=["POST"]),
        Route("/health", proxy.health, methods=["GET"]),
        Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
        Route(
            "/v1/{path:path}",
            proxy.passthrough,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        ),
    ]
    app = Starlette(routes=routes, lifespan=proxy.lifespan, middleware=[Middleware(CacheHeadersMiddleware)])
    app.state.proxy = proxy
    return app


def configure_logging(level: str) -> None:
    """Filter structlog output at ``level`` (the engine logs each request at debug)."""
    import logging

    number = logging.getLevelName(level.upper())
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            number if isinstance(number, int) else logging.INFO
        )
    )


def app_from_env() -> Starlette:
    """The app factory ``--workers`` processes import (config handed over by ``main``)."""
    raw = os.environ.get(CONFIG_ENV)
    config = ProxyConfig.from_json(raw) if raw else ProxyConfig.from_env()
    configure_logging(config.log_level)
    return create_app(config)
