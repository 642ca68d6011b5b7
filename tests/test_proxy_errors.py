"""Proxy errors and auth: every error in the provider's own format with the right status,
proxy keys, the negative cache, upstream failures and timeouts; nothing from an error is
cached and no key ever shows up in a response, the logs or the stats."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai
import pytest
from _proxy_helpers import RunningProxy, chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider, Reply, start_fake_provider

from cacheback.core._settings import Settings
from cacheback.engine._engine import AsyncEngine

CLAUDE = "claude-sonnet-4-20250514"
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-caller", "anthropic-version": "2023-06-01"}
OPENAI_AUTH = {"Authorization": "Bearer sk-caller"}


@pytest.fixture
def proxy(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[RunningProxy]:
    with running_proxy(
        proxy_config(fake, cache_dir, max_body_bytes=4096, upstream_timeout=0.5), embedder
    ) as px:
        yield px


def settle() -> None:
    time.sleep(0.25)


def openai_error(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    err: dict[str, Any] = body["error"]
    return err


def anthropic_error(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    err: dict[str, Any] = body["error"]
    return err


# --- 400 / 413 -------------------------------------------------------------------------------------


def test_malformed_json_and_wrong_types_are_400(proxy: RunningProxy, fake: FakeProvider) -> None:
    cases: list[tuple[bytes, str | None]] = [
        (b"{not json", None),
        (b"[1, 2]", "body"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "model"),
        (json.dumps({"model": "gpt-4o", "messages": "hi"}).encode(), "messages"),
        (json.dumps({"model": "gpt-4o", "messages": ["hi"]}).encode(), "messages[0]"),
        (json.dumps({"model": 4, "messages": []}).encode(), "model"),
        (json.dumps({**chat_body("hi"), "stream": "yes"}).encode(), "stream"),
        (json.dumps({**chat_body("hi"), "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({**chat_body("hi"), "max_tokens": 1.5}).encode(), "max_tokens"),
    ]
    with proxy.http() as http:
        for raw, param in cases:
            resp = http.post("/v1/chat/completions", content=raw, headers=OPENAI_AUTH)
            assert resp.status_code == 400, raw
            err = openai_error(resp)
            assert err["type"] == "invalid_request_error" and err["param"] == param, raw
            assert resp.headers["x-cacheback-tier"] == "error"
        resp = http.post("/v1/responses", json={"model": "gpt-4o", "input": 5}, headers=OPENAI_AUTH)
        assert resp.status_code == 400 and openai_error(resp)["param"] == "input"
        resp = http.post("/v1/messages", content=b"{oops", headers=ANTHROPIC_HEADERS)
        assert resp.status_code == 400
        assert anthropic_error(resp)["type"] == "invalid_request_error"
        bad_header = http.post(
            "/v1/chat/completions", json=chat_body("hi"), headers={**OPENAI_AUTH, "X-Cacheback-TTL": "-1"}
        )
        assert bad_header.status_code == 400 and "TTL" in openai_error(bad_header)["message"]
    assert fake.count() == 0


def test_oversized_bodies_are_413(proxy: RunningProxy, fake: FakeProvider) -> None:
    big = "x" * 5000
    with proxy.openai() as client, pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**chat_body(big))
    assert info.value.status_code == 413
    with proxy.anthropic() as claude, pytest.raises(anthropic.APIStatusError) as ainfo:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": big}])
    assert ainfo.value.status_code == 413
    assert ainfo.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 1000

    with proxy.http() as http:
        resp = http.post("/v1/chat/completions", content=chunked(), headers=OPENAI_AUTH)
        assert resp.status_code == 413 and openai_error(resp)["code"] == "request_too_large"
    assert fake.count() == 0


# --- 401 and proxy keys ---------------------------------------------------------------------------


def test_proxy_keys_guard_the_upstream_key(cache_dir: Path, embedder: Any, capsys: Any) -> None:
    server_openai, server_anthropic = "sk-server-openai-secret", "sk-ant-server-secret"
    with start_fake_provider(api_key=server_openai) as fake:
        config = proxy_config(
            fake,
            cache_dir,
            proxy_keys=("pk-alpha-0001", "pk-beta-0002"),
            openai_api_key=server_openai,
            anthropic_api_key=server_anthropic,
        )
        with running_proxy(config, embedder) as px:
            with px.http() as http:
                missing = http.post("/v1/chat/completions", json=chat_body("Hello"))
                assert missing.status_code == 401 and openai_error(missing)["code"] == "invalid_api_key"
            with (
                px.openai(api_key="sk-server-openai-secret-wrong") as wrong,
                pytest.raises(openai.AuthenticationError) as info,
            ):
                wrong.chat.completions.create(**chat_body("Hello"))
            assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
            with px.openai(api_key="pk-alpha-0001") as alpha, px.openai(api_key="pk-beta-0002") as beta:
                assert alpha.chat.completions.create(**chat_body("Hello")).choices[0].message.content
                settle()
                raw = alpha.chat.completions.with_raw_response.create(**chat_body("Hello"))
                assert raw.headers["x-cacheback-tier"] == "exact"
                # Each proxy key is its own tenant.
                raw = beta.chat.completions.with_raw_response.create(**chat_body("Hello"))
                assert raw.headers["x-cacheback-tier"] == "upstream"
                stats = alpha.get("/cache/stats", cast_to=object)
            with px.anthropic(api_key="pk-alpha-0001") as claude:
                # The fake only knows the OpenAI key: the Anthropic server key arrives intact.
                with pytest.raises(anthropic.AuthenticationError):
                    claude.messages.create(
                        model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
                    )
            with px.http() as http:
                assert http.get("/v1/cache/stats").status_code == 401
                assert http.get("/health").status_code == 200
        seen = fake.requests()
    assert {r.headers.get("authorization") for r in seen if r.endpoint == "chat"} == {
        f"Bearer {server_openai}"
    }
    assert [r.headers.get("x-api-key") for r in seen if r.endpoint == "messages"] == [server_anthropic]
    assert all("pk-alpha" not in json.dumps(r.headers) for r in seen)
    assert stats["proxy"]["auth"] == "proxy-keys"  # type: ignore[index]
    text = json.dumps(stats) + capsys.readouterr().out
    for secret in (server_openai, server_anthropic, "pk-alpha-0001", "pk-beta-0002"):
        assert secret not in text


def test_no_credential_and_no_server_key_is_401(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.http() as http:
        resp = http.post("/v1/chat/completions", json=chat_body("Hi"))
        assert resp.status_code == 401 and openai_error(resp)["code"] == "invalid_api_key"
        resp = http.post(
            "/v1/messages",
            json={"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert resp.status_code == 401 and anthropic_error(resp)["type"] == "authentication_error"
    assert fake.count() == 0


def test_upstream_error_bodies_never_echo_keys(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(
        Reply(status=401, error_message="Incorrect API key provided: sk-proj-****abcd. Get one online."),
        endpoint="chat",
    )
    with (
        proxy.openai(api_key="sk-proj-caller-key-abcd") as client,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        client.chat.completions.create(**chat_body("Hi"))
    assert info.value.status_code == 401
    assert "sk-proj" not in json.dumps(info.value.body)
    assert "Incorrect API key provided" in info.value.message


# --- 403: the negative cache ------------------------------------------------------------------------


def test_blocked_queries_are_403_with_the_reason(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    async def block() -> None:
        async with AsyncEngine(Settings(cache_dir=cache_dir), embedder=embedder) as engine:
            await engine.blocklist.add(
                "How to hack into systems", reason="refusal", category="safety", severity=5
            )

    anyio.run(block)
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
        with px.openai() as client:
            with pytest.raises(openai.PermissionDeniedError) as info:
                client.chat.completions.create(**chat_body("How do I hack into computer systems?"))
            assert info.value.status_code == 403
            assert "refusal" in info.value.message
            assert info.value.response.headers["x-cacheback-tier"] == "blocked"
            assert info.value.response.headers["x-cacheback-reason"] == "refusal"
            with pytest.raises(openai.PermissionDeniedError):
                client.chat.completions.create(**chat_body("How to hack into systems", stream=True))
            assert client.chat.completions.create(**chat_body("How do I bake bread?")).choices
        with px.anthropic() as claude, pytest.raises(anthropic.PermissionDeniedError) as ainfo:
            claude.messages.create(
                model=CLAUDE,
                max_tokens=10,
                messages=[{"role": "user", "content": "How to hack into systems"}],
            )
        assert ainfo.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert "refusal" in ainfo.value.body["error"]["message"]  # type: ignore[index]
    assert fake.count() == 1


# --- upstream failures --------------------------------------------------------------------------------


def test_upstream_errors_pass_through_and_are_not_cached(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(
        Reply(status=429, error_message="Rate limit reached", headers={"retry-after": "7"}),
        Reply(status=500),
        Reply(status=400, error_message="Unknown model"),
        endpoint="chat",
    )
    with proxy.openai() as client:
        with pytest.raises(openai.RateLimitError) as rate:
            client.chat.completions.create(**chat_body("Hi there"))
        assert rate.value.response.headers["retry-after"] == "7"
        assert rate.value.response.headers["x-cacheback-tier"] == "upstream"
        assert rate.value.body["message"] == "Rate limit reached"  # type: ignore[index]
        with pytest.raises(openai.InternalServerError) as server:
            client.chat.completions.create(**chat_body("Hi there", stream=True))
        assert server.value.status_code == 500
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(**chat_body("Hi there"))
        assert "Unknown model" in bad.value.message
        ok = client.chat.completions.with_raw_response.create(**chat_body("Hi there"))
        assert ok.headers["x-cacheback-tier"] == "upstream"
        settle()
        ok = client.chat.completions.with_raw_response.create(**chat_body("Hi there"))
        assert ok.headers["x-cacheback-tier"] == "exact"
    fake.script(
        Reply(status=529, error_type="overloaded_error", error_message="Overloaded"), endpoint="messages"
    )
    with proxy.anthropic() as claude, pytest.raises(anthropic.APIStatusError) as over:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    assert over.value.status_code == 529
    assert over.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert fake.count("chat") == 4
    with proxy.http() as http:
        metrics = http.get("/metrics").text
    assert 'cacheback_proxy_upstream_errors_total{worker="' in metrics
    assert 'provider="openai",kind="429"} 1' in metrics
    assert 'provider="anthropic",kind="529"} 1' in metrics


def test_upstream_timeout_is_504(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(Reply(hang=True), endpoint="chat")
    fake.script(Reply(hang=True), endpoint="messages")
    with proxy.openai() as client:
        t0 = time.perf_counter()
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(**chat_body("Slow question"))
        assert info.value.status_code == 504 and time.perf_counter() - t0 < 5
        assert info.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    with proxy.anthropic() as claude, pytest.raises(anthropic.APIStatusError) as ainfo:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "Slow"}])
    assert ainfo.value.status_code == 504
    assert ainfo.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]


def test_broken_and_stalled_streams_raise_and_are_not_cached(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(
        Reply(stream_error_after=2, error_message="stream broke"),
        Reply(chunk_delay=1.0),  # stalls longer than the proxy's 0.5 s upstream timeout
        endpoint="chat",
    )
    with proxy.openai() as client:
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(**chat_body("A broken stream", stream=True)):
                pass
        with pytest.raises(openai.APIError) as stalled:
            for _ in client.chat.completions.create(**chat_body("A stalled stream", stream=True)):
                pass
        assert "timed out" in stalled.value.message
        settle()
        for q in ("A broken stream", "A stalled stream"):
            raw = client.chat.completions.with_raw_response.create(**chat_body(q))
            assert raw.headers["x-cacheback-tier"] == "upstream", q
    fake.script(Reply(stream_error_after=1), endpoint="messages")
    with proxy.anthropic() as claude, pytest.raises(anthropic.APIStatusError):
        with claude.messages.stream(
            model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "Break"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert fake.count("chat") == 4


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"stream_cut_after": 3}, "ended before its end marker"),  # cut mid-answer
        ({"stream_cut_after": -1}, "ended before its end marker"),  # every chunk but [DONE]
        ({"stream_garbage_after": 2}, "not JSON"),
    ],
)
def test_a_truncated_or_unreadable_stream_raises_and_is_not_cached(
    proxy: RunningProxy, fake: FakeProvider, fault: dict[str, int], message: str
) -> None:
    question = f"A stream with a fault {sorted(fault.items())}"
    fake.script(Reply(**fault), endpoint="chat")  # type: ignore[arg-type]
    with proxy.openai() as client:
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(**chat_body(question, stream=True)):
                seen.append(chunk)
        assert message in info.value.message
        if "stream_garbage_after" in fault:
            assert len(seen) == 2  # the events before the bad one were relayed
        settle()
        again = client.chat.completions.with_raw_response.create(**chat_body(question))
        assert again.headers["x-cacheback-tier"] == "upstream"  # the cut answer was not stored
    assert fake.count("chat") == 2


def test_truncated_responses_and_messages_streams_get_the_providers_error(
    proxy: RunningProxy, fake: FakeProvider
) -> None:
    fake.script(Reply(stream_cut_after=-1), endpoint="responses")
    fake.script(Reply(stream_cut_after=-1), Reply(stream_garbage_after=1), endpoint="messages")
    with proxy.openai() as client:
        events = list(client.responses.create(model="gpt-4o", input="Cut before completed", stream=True))
        assert events[-1].type == "error" and "end marker" in events[-1].message
        assert not any(e.type == "response.completed" for e in events)
    with proxy.anthropic() as claude:
        for question in ("Cut before message_stop", "Garbage in a message stream"):
            with pytest.raises(anthropic.APIStatusError) as info:
                with claude.messages.stream(
                    model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": question}]
                ) as stream:
                    for _ in stream.text_stream:
                        pass
            assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    settle()
    with proxy.http() as http:
        resp = http.post(
            "/v1/messages",
            json={
                "model": CLAUDE,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "Cut before message_stop"}],
            },
            headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
        )
        assert resp.headers["x-cacheback-tier"] == "upstream"


def test_unreachable_upstream_is_502(cache_dir: Path, embedder: Any, fake: FakeProvider) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with running_proxy(proxy_config(fake, cache_dir, openai_base_url=dead), embedder) as px:
        with px.openai() as client, pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(**chat_body("Anyone there?"))
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_unreachable"  # type: ignore[index]
