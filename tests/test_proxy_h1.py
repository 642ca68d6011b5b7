"""The proxy's own HTTP plumbing on real loopback sockets: its lean HTTP/1.1 client
(``_h1``: keep-alive, framing, TLS, errors as httpx's classes, the fall-back to httpx, no
cookies kept) and its server protocol (``_server``: an answer in one write)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _proxy_helpers import chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider, Reply

from cacheback.adapters.proxy import ProxyConfig
from cacheback.adapters.proxy._h1 import H1Pool, prepare
from cacheback.adapters.proxy._server import HeadHoldingProtocol
from cacheback.adapters.proxy._upstream import Upstream

Respond = Callable[["Server", bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0


@asynccontextmanager
async def serving(
    respond: Respond,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """A loopback server reading requests (head and Content-Length body) and answering each
    with ``respond`` (which returns whether to keep the connection)."""
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                state.requests.append(head + body)
                if not await respond(state, head + body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def pool(**overrides: object) -> H1Pool:
    options: dict[str, object] = {
        "max_connections": 4,
        "keepalive_expiry": 30.0,
        "connect_timeout": 5.0,
        "read_timeout": 5.0,
        "pool_timeout": 5.0,
        "ssl_context": None,
    }
    options.update(overrides)
    return H1Pool(**options)  # type: ignore[arg-type]


def answer(body: bytes, *extra: bytes) -> Respond:
    async def respond(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(extra)
        writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return True

    return respond


@pytest.mark.anyio
async def test_one_connection_carries_successive_calls_sent_whole() -> None:
    async with serving(answer(b'{"ok":true}')) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions?x=1"
        for _ in range(3):
            resp = await client.send(prepare("POST", url, [("authorization", "Bearer k")], b'{"q":1}'))
            assert resp.status_code == 200
            assert await resp.aread() == b'{"ok":true}'
            await resp.aclose()
        await client.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in first
    assert b"\r\nauthorization: Bearer k\r\n" in first
    assert b"\r\ncontent-length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"q":1}')


@pytest.mark.anyio
async def test_chunked_gzip_and_to_the_close_bodies() -> None:
    packed = gzip.compress(b"hello world")

    async def respond(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(state.requests) == 1:  # chunked and gzipped
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n")
            for i in range(0, len(packed), 5):
                part = packed[i : i + 5]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return True
        # Neither length nor chunks: the body ends with the connection.
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()
        return False

    async with serving(respond) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/v1/x"
        resp = await client.send(prepare("POST", url, [], b"{}"))
        assert await resp.aread() == b"hello world"
        await resp.aclose()
        resp = await client.send(prepare("POST", url, [], b"{}"))
        assert await resp.aread() == b"until the end"
        await resp.aclose()
        await client.aclose()


@pytest.mark.anyio
async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def respond(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes after each answer, without saying so

    async with serving(respond) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/v1/x"
        for _ in range(2):
            resp = await client.send(prepare("POST", url, [], b"{}"))
            assert await resp.aread() == b"ok"
            await resp.aclose()
            await asyncio.sleep(0.05)  # the close reaches the client
        await client.aclose()
    assert server.connections == 2


@pytest.mark.anyio
async def test_errors_are_httpx_classes() -> None:
    async def silent(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    async def hang_up(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async def cut(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
        await writer.drain()
        return False

    async def garbage(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        return False

    async with serving(silent) as server:
        client = pool(read_timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await client.send(prepare("POST", f"http://127.0.0.1:{server.port}/v1/x", [], b"{}"))
        await client.aclose()
    async with serving(hang_up) as server:
        client = pool()
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send(prepare("POST", f"http://127.0.0.1:{server.port}/v1/x", [], b"{}"))
        await client.aclose()
    async with serving(cut) as server:
        client = pool()
        resp = await client.send(prepare("POST", f"http://127.0.0.1:{server.port}/v1/x", [], b"{}"))
        with pytest.raises(httpx.RemoteProtocolError):
            await resp.aread()
        await resp.aclose()
        await client.aclose()
    async with serving(garbage) as server:
        client = pool()
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send(prepare("POST", f"http://127.0.0.1:{server.port}/v1/x", [], b"{}"))
        await client.aclose()
    port = server.port  # closed now: nothing listens there
    client = pool()
    with pytest.raises(httpx.ConnectError):
        await client.send(prepare("POST", f"http://127.0.0.1:{port}/v1/x", [], b"{}"))
    with pytest.raises(httpx.LocalProtocolError):
        await client.send(prepare("POST", f"http://127.0.0.1:{port}/v1/x", [("x-a", "1\r\nx-b: 2")], b"{}"))
    await client.aclose()


@pytest.mark.anyio
async def test_a_full_pool_waits_then_times_out() -> None:
    async with serving(answer(b"ok")) as server:
        client = pool(max_connections=1, pool_timeout=0.2)
        url = f"http://127.0.0.1:{server.port}/v1/x"
        first = await client.send(prepare("POST", url, [], b"{}"))  # unread: holds the only slot
        with pytest.raises(httpx.PoolTimeout):
            await client.send(prepare("POST", url, [], b"{}"))
        await first.aclose()
        second = await client.send(prepare("POST", url, [], b"{}"))
        assert await second.aread() == b"ok"
        await second.aclose()
        await client.aclose()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.anyio
async def test_https_is_verified_against_the_given_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    async with serving(answer(b"secure"), tls=server_tls) as server:
        url = f"https://127.0.0.1:{server.port}/v1/x"
        trusting = pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
        resp = await trusting.send(prepare("POST", url, [], b"{}"))
        assert await resp.aread() == b"secure"
        await resp.aclose()
        await trusting.aclose()
        default = pool(ssl_context=ssl.create_default_context())  # does not know the cert
        with pytest.raises(httpx.ConnectError):
            await default.send(prepare("POST", url, [], b"{}"))
        await default.aclose()


@pytest.mark.anyio
async def test_the_proxy_falls_back_to_httpx_behind_an_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ProxyConfig()
    lean = Upstream(config)
    assert lean._h1 is not None
    await lean.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    behind = Upstream(config)
    assert behind._h1 is None
    await behind.aclose()


def test_provider_cookies_are_never_sent_back(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    """Neither client keeps a provider's Set-Cookie: it would go upstream with the next
    caller's calls."""
    cookie = {"set-cookie": "session=one-caller; Path=/"}
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px, px.http() as http:
        auth = {"Authorization": "Bearer sk-caller"}
        fake.script(*(Reply(headers=cookie) for _ in range(12)))
        for question in ("first cookie question", "second cookie question"):
            resp = http.post("/v1/chat/completions", json=chat_body(question), headers=auth)
            assert resp.status_code == 200 and "set-cookie" not in resp.headers
        for _ in range(10):  # GET: relayed by httpx (its clients, in turn)
            assert http.get("/v1/models", headers=auth).status_code == 200
    assert all("cookie" not in r.headers for r in fake.requests())


# --- the server side: one write per answer ----------------------------------------------------------


@contextmanager
def serving_app(app: Any) -> Iterator[int]:
    """``app`` served by uvicorn with the proxy's protocol, on a loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http=HeadHoldingProtocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_an_answer_leaves_whole_and_a_stream_head_does_not_wait() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    release = threading.Event()

    async def whole(request: Request) -> Response:
        return Response(b'{"answer":42}', media_type="application/json")

    async def stream(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            await asyncio.to_thread(release.wait, 10)  # set by the test's thread
            yield b"data: late\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/whole", whole), Route("/stream", stream)])
    with serving_app(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for _ in range(3):  # kept alive: each answer in one piece
            conn.sendall(b"GET /whole HTTP/1.1\r\nhost: x\r\n\r\n")
            got = conn.recv(65536)
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b'\r\n\r\n{"answer":42}')
        conn.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        head = conn.recv(65536)  # before the first event exists
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        release.set()
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += conn.recv(65536)
        assert b"data: late" in rest
        conn.sendall(b"HEAD /whole HTTP/1.1\r\nhost: x\r\n\r\n")  # a head with no body follows
        assert conn.recv(65536).endswith(b"\r\n\r\n")


@pytest.mark.anyio
async def test_a_response_dropped_unclosed_frees_its_slot() -> None:
    async with serving(answer(b"ok")) as server:
        client = pool(max_connections=1, pool_timeout=2.0)
        url = f"http://127.0.0.1:{server.port}/v1/x"
        dropped = await client.send(prepare("POST", url, [], b"{}"))
        del dropped  # never read nor closed
        resp = await client.send(prepare("POST", url, [], b"{}"))
        assert await resp.aread() == b"ok"
        await resp.aclose()
        await client.aclose()


@pytest.mark.anyio
async def test_an_answer_nobody_asked_for_ends_the_connection() -> None:
    async def respond(state: Server, request: bytes, writer: asyncio.StreamWriter) -> bool:
        n = len(state.requests)
        extra = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra" if n == 1 else b""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n#%d" % n + extra)
        await writer.drain()
        return True

    async with serving(respond) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/v1/x"
        for n in (1, 2):
            resp = await client.send(prepare("POST", url, [], b"{}"))
            assert await resp.aread() == b"#%d" % n
            await resp.aclose()
        await client.aclose()
    assert server.connections == 2
