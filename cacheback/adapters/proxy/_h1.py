"""A lean HTTP/1.1 client for the cached APIs' provider calls.

httpx (its client, httpcore's pool, h11 and anyio's streams) spent about 0.8 ms of CPU on
each relayed call, most of a miss's relay cost: this client sends a call in one write on
a kept-alive connection and parses the answer with httptools (the C parser uvicorn uses,
in the ``proxy`` extra). It answers with an ``httpx.Response`` over its own byte stream,
so that reading, content decoding and the relay are the same as with httpx, and raises
httpx's exception classes (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``...).

It does not do proxies, HTTP/2, redirects, cookies, ``HEAD`` or upgrades: ``Upstream`` uses
it only for POSTs to the providers when no HTTP proxy is configured (httpx otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import cast

import httptools
import httpx

#: A body this small goes out in the same write as the request's head.
_JOIN_LIMIT = 64 * 1024
#: Past this many unread bytes of a body, the connection stops reading (back-pressure).
_READ_HIGH = 256 * 1024
_BAD_HEADER = re.compile(r"[\x00\r\n]")
_USER_AGENT = f"python-httpx/{httpx.__version__}"


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port
    host_header: bytes
    target: bytes  # path and query, percent-encoded


@functools.lru_cache(maxsize=256)  # the same few provider URLs again and again
def _target(url: str) -> _Target:
    parsed = httpx.URL(url)  # encodes what needs it, as httpx would
    scheme = parsed.scheme
    if scheme not in ("http", "https") or not parsed.host:
        raise httpx.UnsupportedProtocol(f"unsupported URL: {url!r}")
    port = parsed.port or (443 if scheme == "https" else 80)
    return _Target((scheme, parsed.host, port), parsed.netloc, parsed.raw_path)


def _head(method: str, target: _Target, headers: Iterable[tuple[str, str]], length: int | None) -> bytes:
    lines = [f"{method} ".encode("ascii"), target.target, b" HTTP/1.1\r\nhost: ", target.host_header, b"\r\n"]
    seen: set[str] = set()
    for k, v in headers:
        if _BAD_HEADER.search(k) or _BAD_HEADER.search(v) or not k:
            raise httpx.LocalProtocolError("invalid header name or value")
        seen.add(k.lower())
        try:
            lines.append(f"{k}: {v}\r\n".encode("latin-1"))
        except UnicodeEncodeError:  # only a server-side value can fall outside latin-1
            lines.append(f"{k}: {v}\r\n".encode())
    # What httpx adds to a request that lacks them.
    if "accept" not in seen:
        lines.append(b"accept: */*\r\n")
    if "accept-encoding" not in seen:
        lines.append(b"accept-encoding: gzip, deflate\r\n")
    if "user-agent" not in seen:
        lines.append(f"user-agent: {_USER_AGENT}\r\n".encode())
    if length is not None:
        lines.append(b"content-length: %d\r\n" % length)
    lines.append(b"\r\n")
    return b"".join(lines)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request as it goes on the wire: its origin and the bytes to write."""

    origin: tuple[str, str, int]
    parts: tuple[bytes, ...]


def prepare(method: str, url: str, headers: Iterable[tuple[str, str]], content: bytes | None) -> Prepared:
    """``Prepared`` bytes for a call; ``httpx.LocalProtocolError`` for a header that cannot
    be sent, ``httpx.UnsupportedProtocol`` for a URL that is not http(s)."""
    target = _target(url)
    length = len(content) if content is not None else (0 if method in ("POST", "PUT", "PATCH") else None)
    head = _head(method, target, headers, length)
    if content and len(content) <= _JOIN_LIMIT:
        return Prepared(target.origin, (head + content,))
    return Prepared(target.origin, (head, content) if content else (head,))


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.active = False  # a request is out: anything received belongs to its answer
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False  # no length and not chunked: the body ends with the connection
        self.error: Exception | None = None
        self.chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._extra = False  # a second answer after this one's end: nothing asked for it

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing was asked: the connection cannot be trusted any more
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"))
            self.close()
        if self._extra:
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and self.until_eof and not self.complete and self.error is None:
            self.complete = True
        elif not self.complete and self.error is None:
            if self.headers_done:
                message = "peer closed connection without sending complete message body"
            else:
                message = "Server disconnected without sending a response."
            self.error = httpx.RemoteProtocolError(message)
        self._wake()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._extra = self.complete

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._extra:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._extra:
            return
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)
        self.until_eof = not framed and self.status not in (204, 304) and self.status >= 200
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._extra:
            return
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._extra:
            return
        self.complete = True
        self._wake()

    # used by the pool and the body

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float | None) -> None:
        """Until something new arrived (headers, a chunk, the end, an error); ReadTimeout
        after ``seconds`` without (None: no limit)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _expire, waiter) if seconds is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> bytes:
        chunk = self.chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= _READ_HIGH // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def start(self, data: Iterable[bytes]) -> None:
        assert self.transport is not None
        self._reset()
        self.active = True
        for part in data:
            self.transport.write(part)

    def reusable(self, now: float, expiry: float) -> bool:
        return not self.closed and self.transport is not None and now - self.idle_since < expiry

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the provider"))


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection; at its end (or close) the connection goes
    back to the pool if it can carry another request, else it is closed."""

    def __init__(self, pool: H1Pool, conn: _Connection, timeout: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = timeout
        self._released = False
        self._loop = asyncio.get_running_loop()

    def __del__(self) -> None:
        # A response dropped unclosed (its request cancelled between the answer and the
        # relay) must not hold its slot for good: its connection is closed, on the loop.
        if not self._released:
            self._released = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                free = functools.partial(self._pool.release, self._conn, reuse=False)
                self._loop.call_soon_threadsafe(free)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            while conn.chunks:
                yield conn.take()
            if conn.error is not None:
                self._release(reuse=False)
                raise conn.error
            if conn.complete:
                self._release(reuse=True)
                return
            try:
                await conn.wait(self._timeout)
            except BaseException:
                self._release(reuse=False)
                raise

    async def aclose(self) -> None:
        self._release(reuse=self._conn.complete and not self._conn.chunks and self._conn.error is None)

    def _release(self, *, reuse: bool) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn, reuse=reuse)


class H1Pool:
    """Kept-alive connections per origin, at most ``max_connections`` requests at once."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float,
        connect_timeout: float | None,
        read_timeout: float | None,
        pool_timeout: float | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections
        self._expiry = keepalive_expiry
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_timeout = pool_timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def send(self, request: Prepared) -> httpx.Response:
        """The provider's answer to ``request`` once its headers have arrived; its body is
        read from the response (``aread``, ``aiter_bytes``...), which must be closed."""
        parts = request.parts
        origin = request.origin
        await self._acquire()
        try:
            conn = self._idle_connection(origin) or await self._connect(origin)
        except BaseException:
            self._slots.release()
            raise
        try:
            conn.start(parts)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self._read_timeout)
        except BaseException:
            self.release(conn, reuse=False)
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, self._read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(self) -> None:
        if self._closed:
            raise httpx.ConnectError("the upstream client is closed")
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._pool_timeout)
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection became free in time") from None

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        conn = _Connection(origin)
        tls = scheme == "https"
        context = (self._ssl or ssl.create_default_context()) if tls else None
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn, host, port, ssl=context, server_hostname=host if tls else None
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    def release(self, conn: _Connection, *, reuse: bool) -> None:
        """The end of a request on ``conn``: kept for the next one, or closed."""
        self._slots.release()
        conn.active = False
        if reuse and conn.keep_alive and conn.complete and not conn.closed and not self._closed:
            idle = self._idle.setdefault(conn.origin, [])
            if len(idle) < self._max_idle:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                return
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
