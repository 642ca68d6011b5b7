"""Hostile and malformed requests: paths that try to leave ``/v1``, text the engine cannot
hash, wrong types, out-of-range ids, non-ASCII headers, wrong methods on the proxy's own
routes. Each is refused in the provider's format (never a plain-text 500, never sent
upstream with the server's key)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy_helpers import RunningProxy, chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback.adapters.proxy._upstream import UnsafePath, join_url

CLAUDE = "claude-sonnet-4-20250514"
SERVER_KEY = "sk-server-secret-0001"
PROXY_KEY = "pk1-hardening"
HEADERS = ("x-cacheback-hit", "x-cacheback-synthesized", "x-cacheback-tier", "x-cacheback-similarity")
OPENAI_AUTH = {"Authorization": "Bearer sk-caller"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-caller", "anthropic-version": "2023-06-01"}


@pytest.fixture
def proxy(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[RunningProxy]:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
        yield px


def openai_error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    err: dict[str, Any] = body["error"]
    return err


def anthropic_error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    err: dict[str, Any] = body["error"]
    return err


# --- path traversal ---------------------------------------------------------------------------------


@dataclass
class Recorder:
    """A catch-all upstream on loopback that records every request line and its headers."""

    base_url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@contextmanager
def recording_upstream() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            rec.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = b'{"object":"list","data":[]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    rec.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def raw_request(
    base_url: str, method: str, target: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with ``target`` sent byte for byte (httpx would resolve dot segments)."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


ESCAPES = [
    ("GET", "/v1/../secret-admin/x"),
    ("GET", "/v1/%2e%2e/secret-admin/x"),
    ("GET", "/v1/%2E%2e/secret-admin/x"),
    ("GET", "/v1/.%2E/secret-admin/x"),
    ("GET", "/v1/..%2fsecret-admin/x"),
    ("GET", "/v1/%2e%2e%2Fsecret-admin/x"),
    ("GET", "/v1/models/..%5c..%5csecret-admin"),
    ("GET", "/v1/models/%252e%252e/%252e%252e/secret-admin"),  # decoded twice upstream
    ("GET", "/v1/./models"),
    ("GET", "/v1/models/.."),
    ("DELETE", "/v1/files/..;/..;/secret-admin"),
]


def test_passthrough_never_leaves_v1(cache_dir: Path, embedder: Any, fake: FakeProvider) -> None:
    with recording_upstream() as up:
        config = proxy_config(
            fake,
            cache_dir,
            openai_base_url=f"{up.base_url}/v1",
            anthropic_base_url=up.base_url,
            proxy_keys=(PROXY_KEY,),
            openai_api_key=SERVER_KEY,
            anthropic_api_key="sk-ant-server-secret",
        )
        with running_proxy(config, embedder) as px:
            for method, target in ESCAPES:
                status, headers, body = raw_request(
                    px.base_url, method, target, {"Authorization": f"Bearer {PROXY_KEY}"}
                )
                assert status == 400, (target, status, body)
                err = json.loads(body)["error"]
                assert err["type"] == "invalid_request_error" and err["code"] == "invalid_path", target
                assert headers["x-cacheback-tier"] == "error"
            status, _, body = raw_request(
                px.base_url,
                "POST",
                "/v1/messages/../../other",
                {"x-api-key": PROXY_KEY, "anthropic-version": "2023-06-01"},
                b"{}",
            )
            assert status == 400 and json.loads(body)["type"] == "error"
            assert up.seen == []
            # The same proxy does relay a clean path (so the refusals above are not vacuous).
            status, headers, _ = raw_request(
                px.base_url, "GET", "/v1/models", {"Authorization": f"Bearer {PROXY_KEY}"}
            )
            assert status == 200 and headers["x-cacheback-tier"] == "none"
        assert [(m, p) for m, p, _ in up.seen] == [("GET", "/v1/models")]
        assert up.seen[0][2]["authorization"] == f"Bearer {SERVER_KEY}"


def test_passthrough_relays_the_path_as_encoded_and_refuses_control_characters(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    with recording_upstream() as up:
        config = proxy_config(fake, cache_dir, openai_base_url=f"{up.base_url}/v1")
        with running_proxy(config, embedder) as px:
            for target in ("/v1/files/a%2Fb", "/v1/models/a%25b", "/v1/models/ft:gpt-4o:org:x.v1"):
                status, _, body = raw_request(px.base_url, "GET", target, OPENAI_AUTH)
                assert status == 200, (target, body)
            for target in ("/v1/files/a%00b", "/v1/files/a%7Fb", "/v1/files/a%1bb"):
                status, _, body = raw_request(px.base_url, "GET", target, OPENAI_AUTH)
                assert status == 400 and json.loads(body)["error"]["code"] == "invalid_path", target
    # Byte for byte as the caller sent them: an id's %2F stays one segment.
    relayed = ["/v1/files/a%2Fb", "/v1/models/a%25b", "/v1/models/ft:gpt-4o:org:x.v1"]
    assert [p for _, p, _ in up.seen] == relayed


def test_an_upstream_proxys_own_headers_never_reach_the_caller(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    # Two proxies in a row: the caller sees the outer one's tier and entry id only.
    with running_proxy(proxy_config(fake, cache_dir / "inner"), embedder) as inner:
        outer_config = proxy_config(
            fake,
            cache_dir / "outer",
            openai_base_url=f"{inner.base_url}/v1",
            anthropic_base_url=inner.base_url,
        )
        with running_proxy(outer_config, embedder) as outer:
            body = chat_body("What is two proxies deep?")
            first = httpx.post(f"{outer.base_url}/v1/chat/completions", json=body, headers=OPENAI_AUTH)
            assert first.headers.get_list("x-cacheback-tier") == ["upstream"]
            models = httpx.get(f"{outer.base_url}/v1/models", headers=OPENAI_AUTH)
            assert models.headers.get_list("x-cacheback-tier") == ["none"]


def test_base_urls_with_a_query_are_refused() -> None:
    from cacheback.adapters.proxy import parse_args
    from cacheback.core._errors import ConfigError

    for flag in ("--upstream-openai-base-url", "--upstream-anthropic-base-url"):
        for bad in ("http://up/v1?api-version=1", "http://up/v1#x", "ftp://up/v1", "up/v1"):
            with pytest.raises(ConfigError, match=flag):
                parse_args([flag, bad], {})


def test_url_join_stays_under_the_base() -> None:
    assert join_url("http://up/v1", "/models", "a=1") == "http://up/v1/models?a=1"
    assert join_url("http://up/v1", "/files/a?b#c", "") == "http://up/v1/files/a%3Fb%23c"
    unsafe = ("/../x", "/%2e%2e/x", "/a/%2E./b", "/a/..%2f..%2fb", "/.", "x", "/a/%252e%252e/b")
    for path in (*unsafe, "/a%00", "/a\x01"):
        with pytest.raises(UnsafePath):
            join_url("http://up/v1", path, "")
    with pytest.raises(UnsafePath):
        join_url("http://up/v1", "/models", "a=\x00")
    # A very long path is joined without the memo, with the same checks.
    assert join_url("http://up/v1", "/files/" + "a" * 5000, "").endswith("a" * 5000)


# --- request bodies the cache cannot key --------------------------------------------------------------


def test_lone_surrogates_are_400(proxy: RunningProxy, fake: FakeProvider) -> None:
    chat = b'{"model":"gpt-4o","messages":[{"role":"user","content":"\\ud800 hi"}]}'
    responses = b'{"model":"gpt-4o","input":[{"role":"user","content":"hi \\udfff"}]}'
    messages = b'{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"\\ud800 hi"}]}'
    with proxy.http() as http:
        for path, raw, headers, param in (
            ("/v1/chat/completions", chat, OPENAI_AUTH, "messages[0].content"),
            ("/v1/responses", responses, OPENAI_AUTH, "input[0].content"),
        ):
            resp = http.post(path, content=raw, headers=headers)
            assert resp.status_code == 400, resp.text
            err = openai_error(resp)
            assert err["type"] == "invalid_request_error" and err["param"] == param
            assert err["message"] == f"invalid Unicode: lone surrogate in {param}"
            assert resp.headers["x-cacheback-tier"] == "error"
        resp = http.post("/v1/messages", content=messages, headers=ANTHROPIC_HEADERS)
        assert resp.status_code == 400 and "lone surrogate" in anthropic_error(resp)["message"]
        # A surrogate pair is an ordinary character.
        pair = b'{"model":"gpt-4o","messages":[{"role":"user","content":"smile \\ud83d\\ude00"}]}'
        assert http.post("/v1/chat/completions", content=pair, headers=OPENAI_AUTH).status_code == 200
    assert fake.count() == 1


def test_unkeyable_parameters_are_400(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.http() as http:
        for value in (True, 0, 1.5, "audio"):
            for path, body in (
                ("/v1/chat/completions", chat_body("hi", modalities=value)),
                ("/v1/responses", {"model": "gpt-4o", "input": "hi", "modalities": value}),
            ):
                resp = http.post(path, json=body, headers=OPENAI_AUTH)
                assert resp.status_code == 400, (path, value, resp.text)
                assert openai_error(resp)["param"] == "modalities"
        # Past the proxy's own checks (extra_body is merged into the scope): still a 400.
        resp = http.post(
            "/v1/chat/completions", json=chat_body("hi", extra_body={"modalities": 1}), headers=OPENAI_AUTH
        )
        assert resp.status_code == 400 and openai_error(resp)["type"] == "invalid_request_error"
        assert resp.headers["x-cacheback-tier"] == "error"
        # Nesting deeper than the JSON decoder goes.
        deep = b'{"model":"gpt-4o","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        resp = http.post("/v1/chat/completions", content=deep, headers=OPENAI_AUTH)
        assert resp.status_code == 400 and openai_error(resp)["code"] == "invalid_json"
        ok = http.post("/v1/chat/completions", json=chat_body("hi", modalities=["text"]), headers=OPENAI_AUTH)
        assert ok.status_code == 200
    assert fake.count() == 1


def test_n_below_one_and_empty_model_are_400(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.http() as http:
        for n in (0, -1):
            resp = http.post("/v1/chat/completions", json=chat_body("hi", n=n), headers=OPENAI_AUTH)
            assert resp.status_code == 400
            err = openai_error(resp)
            assert err["param"] == "n" and err["code"] == "integer_below_min_value"
            assert f"got {n} instead" in err["message"]
        resp = http.post("/v1/chat/completions", json=chat_body("hi", model=""), headers=OPENAI_AUTH)
        assert resp.status_code == 400
        assert "got an empty string" in openai_error(resp)["message"]
    assert fake.count() == 0


def test_report_wrong_hit_ids_out_of_range_are_400(proxy: RunningProxy) -> None:
    with proxy.http() as http:
        for entry_id in (99999999999999999999999, 2**63, 0, -1):
            resp = http.post("/v1/cache/report-wrong-hit", json={"entry_id": entry_id}, headers=OPENAI_AUTH)
            assert resp.status_code == 400, (entry_id, resp.text)
            assert openai_error(resp)["param"] == "entry_id"
        resp = http.post("/v1/cache/report-wrong-hit", json={"entry_id": 2**63 - 1}, headers=OPENAI_AUTH)
        assert resp.status_code == 404 and openai_error(resp)["code"] == "entry_not_found"


# --- headers -------------------------------------------------------------------------------------------


def test_non_ascii_header_values(proxy: RunningProxy, fake: FakeProvider) -> None:
    bad_key = {b"Authorization": b"Bearer sk-caf\xc3\xa9"}
    with proxy.http() as http:
        for method, path, body in (
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", chat_body("hi")),
            ("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"}),
        ):
            resp = http.request(method, path, json=body, headers=bad_key)
            assert resp.status_code == 401, (path, resp.text)
            assert openai_error(resp)["code"] == "invalid_api_key"
        resp = http.post(
            "/v1/messages",
            json={"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]},
            headers={b"x-api-key": b"sk-ant-caf\xc3\xa9", b"anthropic-version": b"2023-06-01"},
        )
        assert resp.status_code == 401 and anthropic_error(resp)["type"] == "authentication_error"
        assert fake.count() == 0
        # Other headers are relayed as the bytes that came in.
        extra = {b"Authorization": b"Bearer sk-caller", b"OpenAI-Project": b"caf\xc3\xa9"}
        assert http.get("/v1/models", headers=extra).status_code == 200
        assert http.post("/v1/chat/completions", json=chat_body("hi"), headers=extra).status_code == 200
    assert [r.headers["openai-project"].encode("latin-1") for r in fake.requests()] == [b"caf\xc3\xa9"] * 2


# --- the proxy's own routes ----------------------------------------------------------------------------


def test_own_routes_are_never_forwarded(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.http() as http:
        for method, path, status in (
            ("POST", "/v1/cache/stats", 405),
            ("DELETE", "/v1/cache/stats", 405),
            ("GET", "/v1/cache/report-wrong-hit", 405),
            ("GET", "/v1/cache/nope", 404),
            ("POST", "/v1/cache", 404),
        ):
            resp = http.request(method, path, headers=OPENAI_AUTH)
            assert resp.status_code == status, (method, path)
            assert openai_error(resp)["type"] == "invalid_request_error"
            assert resp.headers["x-cacheback-tier"] == "error"
        resp = http.post("/v1/cache/stats", headers=ANTHROPIC_HEADERS)
        assert resp.status_code == 405 and anthropic_error(resp)["type"] == "invalid_request_error"
        assert resp.headers["allow"] == "GET, HEAD"
        others = (("POST", "/health", 405), ("PUT", "/metrics", 405), ("GET", "/nope", 404))
        for method, path, status in others:
            resp = http.request(method, path)
            assert resp.status_code == status and resp.headers["content-type"] == "application/json"
            assert openai_error(resp)
            for name in HEADERS:
                assert name in resp.headers
    assert fake.count() == 0


class _FailingTransport(httpx.AsyncBaseTransport):
    """The real network, except that one path fails the way a bug would."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/boom"):
            raise RuntimeError(f"bug while sending {request.headers.get('authorization')}")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_unexpected_errors_are_json_500s(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    from _store_helpers import capture_logs

    proxied = running_proxy(proxy_config(fake, cache_dir), embedder, transport=_FailingTransport())
    with capture_logs() as logs, proxied as px:
        with px.http() as http:
            resp = http.get("/v1/boom", headers={"Authorization": "Bearer sk-secret-caller-key"})
            assert resp.status_code == 500
            err = openai_error(resp)
            assert err["type"] == "server_error" and err["code"] == "internal_error"
            assert "sk-secret" not in resp.text
            assert resp.headers["x-cacheback-tier"] == "error"
            resp = http.get("/v1/messages/boom", headers=ANTHROPIC_HEADERS)
            assert resp.status_code == 500 and anthropic_error(resp)["type"] == "api_error"
            # The server is still serving.
            assert http.get("/v1/models", headers=OPENAI_AUTH).status_code == 200
            metrics = http.get("/metrics").text
    assert 'endpoint="passthrough",tier="error",status="500"} 2' in metrics
    assert any(e["event"] == "unhandled error" and e["log_level"] == "error" for e in logs)
    assert "sk-secret" not in str(logs)  # logged by type, not by message


# --- ids of hits ------------------------------------------------------------------------------------


def test_a_hit_keeps_the_provider_id_only_if_the_provider_kept_the_response(
    proxy: RunningProxy, fake: FakeProvider
) -> None:
    url = f"{proxy.base_url}/v1/responses"

    def ask(question: str, store: bool) -> httpx.Response:
        body = {"model": "gpt-4o", "input": question, "store": store}
        return httpx.post(url, json=body, headers=OPENAI_AUTH, timeout=30)

    def settled(question: str, store: bool) -> httpx.Response:
        for _ in range(100):  # the first answer is written behind
            resp = ask(question, store)
            if resp.headers["x-cacheback-tier"] == "exact":
                return resp
        raise AssertionError("never a hit")

    kept = ask("Which response ids can be chained?", True).json()
    assert settled("Which response ids can be chained?", True).json()["id"] == kept["id"]
    # store=false: the provider does not keep it, so its id cannot be chained; a hit gets
    # an id of its own (and says store as this caller asked).
    unkept = ask("Which responses does the provider forget?", False).json()
    hit = settled("Which responses does the provider forget?", True).json()
    assert hit["id"] != unkept["id"] and hit["id"].startswith("resp_cb") and hit["store"] is True
    assert hit["output"][0]["content"][0]["text"] == unkept["output"][0]["content"][0]["text"]


def test_a_line_break_then_text_in_the_path_is_400_not_404(proxy: RunningProxy, fake: FakeProvider) -> None:
    anthropic_headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    for target, headers, flavour in (
        ("/v1/models%0d%0aX-Injected:%20yes", OPENAI_AUTH, "openai"),
        ("/v1/files/a%0Ab", OPENAI_AUTH, "openai"),
        ("/v1/chat/completions%0d%0aextra", OPENAI_AUTH, "openai"),
        ("/v1/messages%0D%0Aextra", anthropic_headers, "anthropic"),
    ):
        status, out_headers, body = raw_request(proxy.base_url, "POST", target, headers, b"{}")
        assert status == 400, (target, status, body)
        data = json.loads(body)
        code = data["error"]["code"] if flavour == "openai" else data["error"]["type"]
        assert code == ("invalid_path" if flavour == "openai" else "invalid_request_error"), target
        assert out_headers["x-cacheback-tier"] == "error" and "x-injected" not in out_headers
    assert fake.count() == 0
