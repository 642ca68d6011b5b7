"""The provider side: one pooled ``httpx.AsyncClient`` per process, with timeouts, and
the relay of streamed bodies to the caller.

No retries here: the caller's SDK retries on the status codes it chooses, and a retry
inside the proxy would double the caller's latency budget without its knowledge.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..providers._stream_end import NOT_JSON, TRUNCATED, ends_stream, is_done_marker
from ._config import ProxyConfig
from ._errors import Provider, stream_error_event
from ._h1 import H1Pool, Prepared, prepare

# Never forwarded in either direction (RFC 9110 hop-by-hop, plus what httpx/uvicorn set).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Response headers dropped when the body is re-encoded (decoded JSON, our own framing).
_REENCODED = frozenset({"content-encoding", "content-length", "date", "server", "set-cookie"})


class UpstreamTimeout(Exception):
    """The provider did not answer (or stopped sending) within the timeout."""


class UpstreamUnavailable(Exception):
    """The provider could not be reached (connection refused, DNS, TLS, reset)."""


class UpstreamError(Exception):
    """A non-2xx answer from the provider: passed through with its status."""

    def __init__(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.headers = headers
        self.body = body


class UnsafePath(ValueError):
    """A path that could resolve outside the upstream base (``.``/``..`` segments)."""


_SEPARATORS = re.compile(r"[/\\]")


def has_dot_segments(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment, raw or percent-encoded at any depth
    (``%2e%2E``, ``..%2f``, ``%252e``: a server may decode once more before resolving).
    Backslashes count as separators and ``;params`` are ignored, as some servers do."""
    for _ in range(4):
        if any(part.split(";")[0] in (".", "..") for part in _SEPARATORS.split(path)):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still encoded after four rounds: no legitimate path nests that deep


_CONTROL = re.compile(r"[\x00-\x1f\x7f]|%[01][0-9a-fA-F]|%7[fF]")  # raw or encoded
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEMO_PATH = 512  # longer paths are joined without the memo, so it stays small


def join_url(base: str, path: str, query: str) -> str:
    """``base`` + ``path`` (+ ``?query``), refused with ``UnsafePath`` unless the result is
    under ``base`` (httpx resolves dot segments, which would escape the base's path) and
    free of control characters, raw or percent-encoded."""
    url = _join_path(base, path) if len(path) <= _MEMO_PATH else _join_path.__wrapped__(base, path)
    if query:
        if _RAW_CONTROL.search(query):
            raise UnsafePath(path)
        url += "?" + query.replace("#", "%23")
    return url


@functools.lru_cache(maxsize=256)  # parsing URLs is a large part of a hit's cost; paths repeat
def _join_path(base: str, path: str) -> str:
    if not path.startswith("/") or has_dot_segments(path) or _CONTROL.search(path):
        raise UnsafePath(path)
    # A decoded "?" or "#" in the path must not start the query or a fragment.
    url = base + path.replace("?", "%3F").replace("#", "%23")
    try:
        root, joined = httpx.URL(base), httpx.URL(url)
    except httpx.InvalidURL:
        raise UnsafePath(path) from None
    prefix = root.path.rstrip("/") + "/"
    if joined.netloc != root.netloc or not joined.path.startswith(prefix):
        raise UnsafePath(path)
    return url


@dataclass(frozen=True, slots=True)
class Buffered:
    """A complete upstream answer."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def response_headers(headers: httpx.Headers, *, reencoded: bool) -> tuple[tuple[str, str], ...]:
    drop = HOP_BY_HOP | _REENCODED if reencoded else HOP_BY_HOP | {"date", "server", "set-cookie"}
    # An upstream that is itself a cacheback proxy sends its own X-Cacheback-* headers:
    # only this proxy's may reach the caller (its entry ids are the ones to report).
    return tuple(
        (k, v)
        for k, v in headers.multi_items()
        if k.lower() not in drop and not k.lower().startswith("x-cacheback-")
    )


class _NoCookies(CookieJar):
    """Keeps no cookie: one provider's ``Set-Cookie`` to one caller must not ride along on
    every later call, whoever makes it."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class Upstream:
    def __init__(
        self,
        config: ProxyConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        # httpcore's pool scans every connection (probing idle sockets) on each request
        # event, so its cost grows with connections x requests in flight: at 64 concurrent
        # misses that scan dominated the proxy's CPU. Several smaller pools, used in turn,
        # keep each scan short.
        shards = 1 if transport is not None else max(1, min(8, config.max_connections // 16))
        per_shard = -(-config.max_connections // shards)
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(
                    config.upstream_timeout, connect=config.connect_timeout, pool=config.upstream_timeout
                ),
                limits=httpx.Limits(
                    max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=30.0
                ),
                follow_redirects=False,
                cookies=_NoCookies(),
                transport=transport,
                verify=ssl_context if ssl_context is not None else True,
            )
            for _ in range(shards)
        ]
        self._turn = 0
        # POSTs (the cached APIs' calls) go through the lean client unless a test hands in
        # its transport or the environment names an HTTP proxy (which httpx honours).
        self._h1 = (
            H1Pool(
                max_connections=config.max_connections,
                keepalive_expiry=30.0,
                connect_timeout=config.connect_timeout,
                read_timeout=config.upstream_timeout,
                pool_timeout=config.upstream_timeout,
                ssl_context=ssl_context,
            )
            if transport is None and not _environment_proxies()
            else None
        )

    @property
    def _client(self) -> httpx.AsyncClient:
        self._turn = (self._turn + 1) % len(self._clients)
        return self._clients[self._turn]

    @classmethod
    async def start(cls, config: ProxyConfig, transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
        """An Upstream whose TLS context (a CA bundle read from disk) was built off the loop."""
        context = await anyio.to_thread.run_sync(httpx.create_ssl_context)
        return cls(config, transport, context)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.aclose()
        for client in self._clients:
            await client.aclose()

    def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        content: bytes | None,
    ) -> httpx.Request:
        return client.build_request(method, url, headers=_header_bytes(headers), content=content)

    def prepare(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], content: bytes | None
    ) -> Prepared | None:
        """The call's bytes, built ahead (while the cache looks up) for ``call``/``open``;
        None when the lean client does not take it (or cannot: the call then says why)."""
        if self._h1 is None or method != "POST":
            return None
        try:
            return prepare(method, url, headers, content)
        except httpx.HTTPError:
            return None

    async def _send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        content: bytes | None,
        *,
        stream: bool,
        prepared: Prepared | None,
    ) -> httpx.Response:
        if self._h1 is None or method != "POST":
            client = self._client
            return await client.send(self._request(client, method, url, headers, content), stream=stream)
        resp = await self._h1.send(prepared or prepare(method, url, headers, content))
        if not stream:
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        return resp

    async def call(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        content: bytes | None,
        *,
        prepared: Prepared | None = None,
    ) -> Buffered:
        """A complete call (``prepared``: its bytes from ``prepare``); non-2xx raises
        ``UpstreamError``."""
        try:
            resp = await self._send(method, url, headers, content, stream=False, prepared=prepared)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        out = Buffered(resp.status_code, response_headers(resp.headers, reencoded=True), resp.content)
        if not 200 <= resp.status_code < 300:
            raise UpstreamError(out.status, out.headers, out.body)
        return out

    async def open(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        content: bytes | None,
        *,
        raise_for_status: bool = True,
        prepared: Prepared | None = None,
    ) -> httpx.Response:
        """An open streamed response (the caller closes it); non-2xx raises ``UpstreamError``
        unless ``raise_for_status`` is False."""
        try:
            resp = await self._send(method, url, headers, content, stream=True, prepared=prepared)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        if raise_for_status and not 200 <= resp.status_code < 300:
            body = await read_error_body(resp)
            raise UpstreamError(resp.status_code, response_headers(resp.headers, reencoded=True), body)
        return resp


def _environment_proxies() -> bool:
    """Whether the environment names an HTTP proxy (``HTTPS_PROXY``...), as httpx reads it."""
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


def _header_bytes(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # ASGI decoded the caller's headers as latin-1: send back the same bytes (httpx refuses
    # non-ASCII str values). Only a server-side value can fall outside latin-1.
    out: list[tuple[bytes, bytes]] = []
    for k, v in headers:
        try:
            out.append((k.encode("latin-1"), v.encode("latin-1")))
        except UnicodeEncodeError:
            out.append((k.encode(), v.encode()))
    return out


async def read_error_body(resp: httpx.Response) -> bytes:
    """An open error response read whole (empty if the read fails), then closed."""
    try:
        return await resp.aread()
    except httpx.HTTPError:
        return b""
    finally:
        await resp.aclose()


def forward_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], auth: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The caller's headers as sent upstream: without hop-by-hop, cacheback controls,
    credentials (replaced by ``auth``) and encodings (httpx negotiates its own)."""
    from ._auth import is_auth_header

    items = headers.items() if isinstance(headers, Mapping) else headers
    out = [
        (k, v)
        for k, v in items
        if (low := k.lower()) not in HOP_BY_HOP
        and not low.startswith("x-cacheback-")
        and not is_auth_header(low)
        and low != "accept-encoding"
    ]
    out.extend(auth)
    return out


# --- streams ------------------------------------------------------------------------------------


class SSEParser:
    """Incremental server-sent-events decoder: bytes in, JSON ``data`` payloads out."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[Any]:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *blocks, self._buf = buf.split(b"\n\n")
        out: list[Any] = []
        for block in blocks:
            data = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
            if not data:
                continue
            payload = b"\n".join(data)
            if payload != b"[DONE]":
                out.append(json.loads(payload))
        return out


class StreamCut(Exception):
    """A stream ended without its API's end marker, or sent data that is not JSON."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class SSEFramer:
    """Cuts a stream into whole SSE blocks and checks them: each ``data`` is JSON, and the
    API's end marker comes (``_stream_end.py``). Only whole blocks are relayed, so an error
    event sent after them is read as one by the caller's SDK."""

    def __init__(self, api: str) -> None:
        self._buf = b""
        self._api = api
        self.ended = False

    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *blocks, self._buf = buf.split(b"\n\n")
        return self._check(blocks)

    def finish(self) -> bytes:
        """At the end of the body: a last block without its blank line still counts."""
        rest, self._buf = self._buf, b""
        out = self._check([rest] if rest.strip() else [])
        if not self.ended:
            raise StreamCut("stream_truncated", TRUNCATED)
        return out

    def _check(self, blocks: list[bytes]) -> bytes:
        for block in blocks:
            name: str | None = None
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode("utf-8", "replace")
            if not data:
                continue
            payload = b"\n".join(data)
            if is_done_marker(payload):
                self.ended = True
                continue
            try:
                event = json.loads(payload)
            except ValueError:  # not JSON (nor UTF-8): no SDK can read it
                raise StreamCut("stream_not_json", NOT_JSON) from None
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                name = event["type"]
            if ends_stream(self._api, name, event):
                self.ended = True
        return b"".join([block + b"\n\n" for block in blocks])


async def framed(chunks: AsyncIterator[bytes], api: str) -> AsyncIterator[bytes]:
    """``chunks`` as whole, checked SSE blocks; raises ``StreamCut`` where they fail."""
    framer = SSEFramer(api)
    async for chunk in chunks:
        out = framer.feed(chunk)
        if out:
            yield out
    out = framer.finish()
    if out:
        yield out


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def aclose_if_closable(resource: object) -> None:
    aclose = getattr(resource, "aclose", None)
    if aclose is not None:
        await aclose()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class StreamingBody(Response):
    """A body sent chunk by chunk as ``chunks`` produces it, stopped when the client goes.

    Unlike Starlette's StreamingResponse it always closes ``chunks`` (even when the
    client left while a chunk was being sent) and reports how the stream ended, so the
    caller can decide whether the answer may be cached.
    """

    def __init__(
        self, status: int, headers: Iterable[tuple[str, str]], media_type: str | None = None
    ) -> None:
        self.status_code = status
        self.background = None
        self.raw_headers = encode_headers(headers)
        if media_type is not None and not any(k == b"content-type" for k, _ in self.raw_headers):
            self.raw_headers.append((b"content-type", media_type.encode("latin-1")))

    def add_headers(self, headers: Iterable[tuple[str, str]]) -> None:
        self.raw_headers.extend(encode_headers(headers))

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def finished(self, completed: bool) -> None:
        """Called once the body has ended: ``completed`` unless cut short or abandoned."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        chunks = self.chunks()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await aclose_if_closable(chunks)
                await self.finished(completed)


class RelayedStream(StreamingBody):
    """An upstream streamed body relayed chunk by chunk as it arrives.

    ``source`` is the raw chunk iterator; the relay sends ``events`` (``source`` unless
    someone reads the chunks on their way: the engine, to cache the answer, hands back its
    reading iterator). A broken or stalled upstream ends the relay with an error event in
    the provider's format; a client that goes away cancels the upstream read (no more tokens
    are paid for).
    """

    def __init__(
        self,
        upstream: httpx.Response,
        *,
        provider: Provider,
        api: str,
        on_error: Callable[[str], None] | None = None,
        raw: bool = False,
    ) -> None:
        super().__init__(upstream.status_code, response_headers(upstream.headers, reencoded=not raw))
        self._up = upstream
        self._provider = provider
        self._api = api
        self._on_error = on_error
        self._raw = raw
        # A cached API's stream is relayed as whole, checked SSE blocks (``framed``).
        self.source: AsyncIterator[bytes] = (
            upstream.aiter_raw() if raw else framed(upstream.aiter_bytes(), api)
        )
        self.events: AsyncIterator[bytes] = self.source

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.events:
                yield chunk
        except StreamCut as cut:
            # Cut short, or unreadable: an error the SDK raises; the engine stored nothing
            # (the exception passed through its reader before the stream's normal end).
            if self._on_error is not None:
                self._on_error(cut.kind)
            yield stream_error_event(self._provider, self._api, cut.message, "api_error")
        except httpx.HTTPError as exc:
            timeout = isinstance(exc, httpx.TimeoutException)
            kind = "timeout" if timeout else "stream_broken"
            if self._on_error is not None:
                self._on_error(kind)
            if not self._raw:
                message = "The upstream stream timed out." if timeout else "The upstream stream broke."
                yield stream_error_event(
                    self._provider, self._api, message, "timeout_error" if timeout else "api_error"
                )

    async def finished(self, completed: bool) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Ends the relay without sending it (a speculative call taken back) or after it."""
        # A reader that stopped early is closed first (it must not see a late end), then
        # the upstream response.
        if self.events is not self.source:
            await aclose_if_closable(self.events)
        await self._up.aclose()
