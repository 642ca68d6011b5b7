"""The proxy as a real server on a loopback port, in front of the fake provider, driven by
the official ``openai`` and ``anthropic`` SDKs (base_url pointed at it) and raw httpx."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from _proxy_helpers import LoopWatch, RunningProxy, chat_body, proxy_config, running_proxy, sse_events
from fake_provider import FakeProvider, Reply

from cacheback.adapters.proxy import ProxyConfig, parse_args
from cacheback.adapters.proxy._auth import tenant_of
from cacheback.core._errors import ConfigError

CLAUDE = "claude-sonnet-4-20250514"
HEADERS = ("x-cacheback-hit", "x-cacheback-synthesized", "x-cacheback-tier", "x-cacheback-similarity")


@pytest.fixture
def proxy(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[RunningProxy]:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
        yield px


def settle() -> None:
    """Let write-behind fills land (the persister flushes every 50 ms)."""
    time.sleep(0.25)


def tier_of(raw: Any) -> str:
    return str(raw.headers["x-cacheback-tier"])


# --- the OpenAI SDK ------------------------------------------------------------------------------


def test_openai_chat_miss_then_exact_and_semantic_hits(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.openai() as client:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "How do I reverse a list in Python?"}]
        )
        assert first.headers["x-cacheback-hit"] == "false"
        assert first.headers["x-cacheback-synthesized"] == "false"
        assert tier_of(first) == "upstream"
        answer = first.parse().choices[0].message.content
        assert answer == "Answer to: How do I reverse a list in Python? [gpt-4o]"
        settle()
        again = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "How do I reverse a list in Python?"}]
        )
        assert again.headers["x-cacheback-hit"] == "true" and tier_of(again) == "exact"
        assert again.headers["x-cacheback-similarity"] == "1.0000"
        assert again.headers["x-cacheback-entry-id"].isdigit()
        completion = again.parse()
        assert completion.choices[0].message.content == answer
        assert completion.model == "gpt-4o" and completion.id.startswith("chatcmpl-")
        similar = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "How can I reverse a list in Python?"}]
        )
        assert tier_of(similar) == "verbatim" and similar.headers["x-cacheback-hit"] == "true"
        assert float(similar.headers["x-cacheback-similarity"]) >= 0.92
        assert similar.parse().choices[0].message.content == answer
        # Another model is another scope.
        other = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "How do I reverse a list in Python?"}]
        )
        assert tier_of(other) == "upstream"
    assert fake.count("chat") == 2


def test_openai_chat_streaming_miss_is_cached_and_replayed(proxy: RunningProxy, fake: FakeProvider) -> None:
    q = [{"role": "user", "content": "Explain quantum computing"}]
    with proxy.openai() as client:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=q, stream=True, stream_options={"include_usage": True}
        ) as raw:
            assert raw.headers["x-cacheback-tier"] == "upstream"
            assert raw.headers["x-cacheback-hit"] == "false"
            chunks = list(raw.parse())
        live = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert live == "Answer to: Explain quantum computing [gpt-4o]"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        settle()
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=q, stream=True, stream_options={"include_usage": True}
        ) as raw:
            assert raw.headers["x-cacheback-hit"] == "true"
            assert raw.headers["x-cacheback-tier"] == "exact"
            replay = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in replay if c.choices) == live
        assert replay[-1].usage is not None
        # A streamed miss serves plain calls too (stream is transport, not scope).
        plain = client.chat.completions.create(model="gpt-4o", messages=q)
        assert plain.choices[0].message.content == live
    assert fake.count("chat") == 1


def test_openai_responses_api_json_and_stream(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.openai() as client:
        first = client.responses.create(model="gpt-4o", input="What is Rust?", instructions="Be brief.")
        assert first.output_text == "Answer to: What is Rust? [gpt-4o]"
        settle()
        raw = client.responses.with_raw_response.create(
            model="gpt-4o", input="What is Rust?", instructions="Be brief."
        )
        assert tier_of(raw) == "exact"
        hit = raw.parse()
        assert hit.output_text == first.output_text and hit.id == first.id  # chainable
        events = list(
            client.responses.create(
                model="gpt-4o", input="What is Rust?", instructions="Be brief.", stream=True
            )
        )
        assert events[-1].type == "response.completed"
        assert events[-1].response.output_text == first.output_text
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == first.output_text
        # Streamed miss on the Responses API, then a hit.
        streamed = list(client.responses.create(model="gpt-4o", input="What is Go?", stream=True))
        assert streamed[-1].type == "response.completed"
        settle()
        again = client.responses.with_raw_response.create(model="gpt-4o", input="What is Go?")
        assert tier_of(again) == "exact"
        assert again.parse().output_text == "Answer to: What is Go? [gpt-4o]"
    assert fake.count("responses") == 2


# --- the Anthropic SDK ---------------------------------------------------------------------------


def test_anthropic_messages_json_and_stream(proxy: RunningProxy, fake: FakeProvider) -> None:
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    with proxy.anthropic() as client:
        raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, messages=msgs)
        assert tier_of(raw) == "upstream"
        first = raw.parse()
        assert first.content[0].text == f"Answer to: What is the capital of France? [{CLAUDE}]"
        settle()
        raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, messages=msgs)
        assert tier_of(raw) == "exact" and raw.headers["x-cacheback-hit"] == "true"
        assert raw.parse().content[0].text == first.content[0].text
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=msgs) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == first.content[0].text and final.stop_reason == "end_turn"
        # A streamed miss, cached, then served to a plain call.
        q2 = [{"role": "user", "content": "Who wrote Hamlet?"}]
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=q2) as stream:
            live = "".join(stream.text_stream)
        settle()
        raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, messages=q2)
        assert tier_of(raw) == "exact" and raw.parse().content[0].text == live
        # max_tokens is in the scope: another value is another question.
        raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=50, messages=q2)
        assert tier_of(raw) == "upstream"
    assert fake.count("messages") == 3
    assert fake.last_request("messages").headers["anthropic-version"]


# --- raw HTTP: framing and headers ---------------------------------------------------------------


def test_sse_framing_and_headers_on_stream_miss_and_hit(proxy: RunningProxy, fake: FakeProvider) -> None:
    body = chat_body("Name three rivers", stream=True)
    with proxy.http() as http:
        miss = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-a"})
        settle()
        hit = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-a"})
    for resp, tier in ((miss, "upstream"), (hit, "exact")):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-cacheback-tier"] == tier
        for name in HEADERS:
            assert name in resp.headers
        raw = resp.content
        assert raw.endswith(b"data: [DONE]\n\n")
        events = sse_events(raw)
        assert all(event is None for event, _ in events)
        chunks = [json.loads(data) for _, data in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == "Answer to: Name three rivers [gpt-4o]"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_anthropic_sse_events_are_named(proxy: RunningProxy) -> None:
    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    headers = {"x-api-key": "sk-ant-a", "anthropic-version": "2023-06-01"}
    with proxy.http() as http:
        miss = http.post("/v1/messages", json=body, headers=headers)
        settle()
        hit = http.post("/v1/messages", json=body, headers=headers)
    assert hit.headers["x-cacheback-tier"] == "exact"
    for resp in (miss, hit):
        events = sse_events(resp.content)
        assert next(e for e, _ in events if e != "ping") == "message_start"
        assert events[-1][0] == "message_stop"
        assert all(e == json.loads(d)["type"] for e, d in events)


def test_stream_miss_is_relayed_as_it_arrives(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(Reply(text="one two three four five six", chunk_delay=0.15), endpoint="chat")
    arrivals: list[float] = []
    with proxy.http() as http:
        t0 = time.perf_counter()
        with http.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body("count slowly", stream=True),
            headers={"Authorization": "Bearer sk-a"},
        ) as resp:
            assert resp.headers["x-cacheback-tier"] == "upstream"
            for _ in resp.iter_raw():
                arrivals.append(time.perf_counter() - t0)
    # ~8 events 150 ms apart: the first must arrive long before the last was sent.
    assert len(arrivals) >= 5
    assert arrivals[0] < 0.5 and arrivals[-1] - arrivals[0] > 0.6


def test_headers_on_every_response(proxy: RunningProxy) -> None:
    with proxy.http() as http:
        for resp in (
            http.get("/health"),
            http.get("/metrics"),
            http.get("/v1/cache/stats"),
            http.get("/nope"),
            http.post("/v1/chat/completions", content=b"{", headers={"Authorization": "Bearer sk-a"}),
        ):
            for name in HEADERS:
                assert name in resp.headers, (resp.request.url, name)
            assert resp.headers["x-cacheback-hit"] == "false"


# --- per-request controls ----------------------------------------------------------------------------


def test_control_headers_apply_and_are_not_forwarded(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.http() as http:

        def tier(question: str, **controls: str) -> str:
            headers = {"Authorization": "Bearer sk-a", **{f"X-Cacheback-{k}": v for k, v in controls.items()}}
            resp = http.post("/v1/chat/completions", json=chat_body(question), headers=headers)
            assert resp.status_code == 200
            settle()
            return str(resp.headers["x-cacheback-tier"])

        # Bypass neither reads nor stores.
        assert tier("What is Go?", Bypass="true") == "bypass"
        assert tier("What is Go?") == "upstream"
        assert tier("What is Go?", Bypass="true") == "bypass"
        assert tier("What is Zig?", **{"No-Store": "1"}) == "upstream"
        assert tier("What is Zig?") == "upstream"
        # TTL: a short-lived entry expires.
        assert tier("What is Nim?", TTL="0.5") == "upstream"
        assert tier("What is Nim?") == "exact"
        time.sleep(0.3)
        assert tier("What is Nim?") == "upstream"
        # Namespaces partition one tenant's cache.
        assert tier("What is Elm?", Namespace="team-a") == "upstream"
        assert tier("What is Elm?", Namespace="team-a") == "exact"
        assert tier("What is Elm?", Namespace="team-b") == "upstream"
        assert tier("What is Elm?") == "upstream"
    for req in fake.requests("chat"):
        assert not any(h.startswith("x-cacheback") for h in req.headers)
        assert req.headers["authorization"] == "Bearer sk-a"
    assert fake.count("chat") == 10


def test_uncacheable_answers_are_not_stored(proxy: RunningProxy, fake: FakeProvider) -> None:
    fake.script(Reply(finish_reason="length"), Reply(refusal="I can't help with that."), endpoint="chat")
    with proxy.openai() as client:
        cut = client.chat.completions.create(**chat_body("Write a long essay"))
        assert cut.choices[0].finish_reason == "length"
        refused = client.chat.completions.create(**chat_body("Something refused"))
        assert refused.choices[0].message.refusal
        settle()
        again = client.chat.completions.with_raw_response.create(**chat_body("Write a long essay"))
        assert tier_of(again) == "upstream"
        again = client.chat.completions.with_raw_response.create(**chat_body("Something refused"))
        assert tier_of(again) == "upstream"
        # n > 1 is not cacheable: bypassed with the reason.
        several = client.chat.completions.with_raw_response.create(**chat_body("Pick a colour", n=2))
        assert tier_of(several) == "bypass" and "n>1" in several.headers["x-cacheback-reason"]
        assert len(several.parse().choices) == 2
    assert fake.count("chat") == 5


# --- tenants, feedback, stats ----------------------------------------------------------------------------


def test_tenants_never_see_each_other(proxy: RunningProxy, fake: FakeProvider, cache_dir: Path) -> None:
    with proxy.openai(api_key="sk-tenant-one") as one, proxy.openai(api_key="sk-tenant-two") as two:
        one.chat.completions.create(**chat_body("What is the tallest mountain on Earth?"))
        settle()
        hit = one.chat.completions.with_raw_response.create(
            **chat_body("What is the tallest mountain on Earth?")
        )
        assert tier_of(hit) == "exact"
        entry_id = int(hit.headers["x-cacheback-entry-id"])
        # Neither a paraphrase (semantic) nor the same text (exact) reaches tenant one's entry.
        other = two.chat.completions.with_raw_response.create(
            **chat_body("Which is the tallest mountain on Earth?")
        )
        assert tier_of(other) == "upstream"
        settle()
        same = two.chat.completions.with_raw_response.create(
            **chat_body("What is the tallest mountain on Earth?")
        )
        assert same.headers.get("x-cacheback-entry-id") != str(entry_id)
        assert (
            same.parse().choices[0].message.content
            == "Answer to: Which is the tallest mountain on Earth? [gpt-4o]"
        )
        # Tenant two may not remove tenant one's entry (nor learn that it exists).
        with pytest.raises(openai.NotFoundError):
            two.post("/cache/report-wrong-hit", body={"entry_id": entry_id}, cast_to=object)
        assert tier_of(one.chat.completions.with_raw_response.create(
            **chat_body("What is the tallest mountain on Earth?"))) == "exact"  # fmt: skip
    assert [r.headers["authorization"] for r in fake.requests("chat")] == [
        "Bearer sk-tenant-one",
        "Bearer sk-tenant-two",
    ]
    # Keys are never stored: only their one-way hash names the tenant.
    db = next(cache_dir.glob("*.db"))
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert "sk-tenant-one" not in dump and "sk-tenant-two" not in dump
    assert tenant_of("sk-tenant-one") in dump


def test_report_wrong_hit_removes_the_entry(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.openai() as client:
        client.chat.completions.create(**chat_body("What is 2 + 2?"))
        settle()
        hit = client.chat.completions.with_raw_response.create(**chat_body("What is 2 + 2?"))
        entry_id = int(hit.headers["x-cacheback-entry-id"])
        result = client.post("/cache/report-wrong-hit", body={"entry_id": entry_id}, cast_to=object)
        assert result == {"entry_id": entry_id, "removed": True, "hit_threshold": None}  # an exact hit
        again = client.chat.completions.with_raw_response.create(**chat_body("What is 2 + 2?"))
        assert tier_of(again) == "upstream"
        with pytest.raises(openai.BadRequestError):
            client.post("/cache/report-wrong-hit", body={"entry_id": "x"}, cast_to=object)
    assert fake.count("chat") == 2


def test_stats_health_metrics_and_passthrough(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.openai() as client:
        client.chat.completions.create(**chat_body("What is Python?"))
        settle()
        client.chat.completions.create(**chat_body("What is Python?"))
        models = client.models.list()
        assert [m.id for m in models.data][:1] == ["gpt-4o"]
    with proxy.anthropic() as claude:
        assert claude.models.list().data[0].id.startswith("claude")
    with proxy.http() as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["ready"] is True and health.json()["embedder"]["name"] == "minilm"
        embedder = health.json()["embedder"]
        assert embedder["runtime"] == "onnxruntime" and embedder["reason"] is None
        stats = http.get("/v1/cache/stats").json()
        assert stats["entries"] == 1 and stats["tiers"]["exact"] == 1 and stats["tiers"]["upstream"] == 1
        assert stats["proxy"]["auth"] == "caller-keys"
        missing = http.get("/v1/no-such-endpoint", headers={"Authorization": "Bearer sk-a"})
        assert missing.status_code == 404 and missing.headers["x-cacheback-tier"] == "none"
        text = http.get("/metrics").text
    assert 'cacheback_proxy_requests_total{worker="' in text
    assert 'endpoint="chat",tier="exact",status="200"} 1' in text
    assert 'endpoint="passthrough",tier="none",status="200"} 2' in text
    assert 'endpoint="passthrough",tier="none",status="404"} 1' in text
    assert "cacheback_entries{" in text and "cacheback_hit_rate{" in text
    assert 'cacheback_queue_depth{worker="' in text
    assert "cacheback_proxy_request_duration_seconds_bucket{" in text
    assert "sk-test-alpha" not in json.dumps(stats) + text
    assert fake.count("models") == 2


# --- concurrency ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_200_concurrent_mixed_requests(proxy: RunningProxy, fake: FakeProvider) -> None:
    topics = [f"Tell me about topic number {i}" for i in range(10)]
    async with proxy.async_openai() as client:
        # Warm half the topics so that the mix has hits, misses and coalesced misses.
        for t in topics[:5]:
            await client.chat.completions.create(**chat_body(t))
        await anyio.sleep(0.25)
        failures: list[str] = []
        tiers: list[str] = []

        async def one(i: int) -> None:
            topic = topics[i % len(topics)]
            expected = f"Answer to: {topic} [gpt-4o]"
            if i % 4 == 0:
                stream = await client.chat.completions.create(**chat_body(topic, stream=True))
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                tier = "stream"
            elif i % 4 == 1:
                raw = await client.responses.with_raw_response.create(model="gpt-4o", input=topic)
                text = raw.parse().output_text
                tier = raw.headers["x-cacheback-tier"]
            else:
                raw = await client.chat.completions.with_raw_response.create(**chat_body(topic))
                text = raw.parse().choices[0].message.content or ""
                tier = raw.headers["x-cacheback-tier"]
            tiers.append(tier)
            if text != expected:
                failures.append(f"{i}: {text!r}")

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert failures == []
    assert len(tiers) == 200
    assert tiers.count("exact") + tiers.count("verbatim") > 50
    # 10 topics over two APIs: most of the 200 never reached the provider.
    assert fake.count() < 80


# --- configuration ---------------------------------------------------------------------------------------


def test_config_from_flags_and_environment() -> None:
    env = {
        "CACHEBACK_PORT": "9090",
        "CACHEBACK_OPENAI_BASE_URL": "http://127.0.0.1:1/v1/",
        "CACHEBACK_PROXY_KEYS": "pk-1, pk-2",
        "CACHEBACK_SIMILARITY_THRESHOLD": "0.9",
        "CACHEBACK_SYNTHESIS_MODE": "auto",
        "CACHEBACK_TTL": "60",
        "OPENAI_API_KEY": "sk-server",
    }
    config = parse_args([], env)
    assert config.host == "127.0.0.1" and config.port == 9090 and config.workers == 1
    assert config.openai_base_url == "http://127.0.0.1:1/v1"
    assert config.anthropic_base_url == "https://api.anthropic.com"
    assert config.proxy_keys == ("pk-1", "pk-2") and config.openai_api_key == "sk-server"
    settings = config.settings(env)
    assert settings.similarity_threshold == 0.9 and settings.synthesis_mode == "auto"
    assert settings.cache_ttl == 60
    assert "sk-server" not in repr(config) and "pk-1" not in repr(config)
    flags = parse_args(
        ["--port", "7000", "--host", "0.0.0.0", "--workers", "3", "--ttl", "5", "--max-body-bytes", "10"], env
    )
    assert (flags.port, flags.host, flags.workers) == (7000, "0.0.0.0", 3)
    assert (flags.ttl, flags.max_body_bytes) == (5, 10)
    assert ProxyConfig.from_json(flags.to_json()) == flags
    assert parse_args([], {}).port == 8080


def test_upstream_base_urls_follow_the_sdk_variables_after_cacheback_ones(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    env = {"OPENAI_BASE_URL": fake.openai_base_url, "ANTHROPIC_BASE_URL": fake.anthropic_base_url}
    config = parse_args(["--cache-dir", str(cache_dir)], env)
    assert config.openai_base_url == fake.openai_base_url
    assert config.anthropic_base_url == fake.anthropic_base_url
    with running_proxy(config, embedder) as px, px.openai() as client, px.anthropic() as claude:
        assert client.chat.completions.create(**chat_body("Name a blue fruit")).choices[0].message.content
        claude.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    assert fake.count("chat") == 1 and fake.count("messages") == 1
    # CACHEBACK_* names and flags come first.
    ours = parse_args([], {**env, "CACHEBACK_OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert ours.openai_base_url == "http://127.0.0.1:1/v1" and not ours.notes
    flag = parse_args(["--upstream-anthropic-base-url", "http://127.0.0.1:2"], env)
    assert flag.anthropic_base_url == "http://127.0.0.1:2"
    # A variable pointing at the proxy itself (set for the clients) is never followed.
    own = parse_args(["--port", "8111"], {"OPENAI_BASE_URL": "http://localhost:8111/v1"})
    assert own.openai_base_url == "https://api.openai.com/v1"
    assert len(own.notes) == 1 and "points at this proxy itself" in own.notes[0]
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        parse_args([], {"OPENAI_BASE_URL": "ftp://example.com"})


# --- synthesis -----------------------------------------------------------------------------------------

SYNTH = "Use list.reverse() to reverse in place, or slicing [::-1] for a reversed copy."


def test_synthesized_answers_json_and_streams(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    from cacheback.adapters.llm import OpenAICompatibleLLM

    # The cheap model is any OpenAI-compatible endpoint: here the fake, as model synth-mini.
    fake.responder = lambda req: Reply(text=SYNTH) if req.model == "synth-mini" else None
    llm = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-synthesis-key", model="synth-mini")
    config = proxy_config(fake, cache_dir, synthesis_mode="auto")
    base, near = "How do I reverse a list in Python?", "How can I reverse the order of a Python list?"
    with running_proxy(config, embedder, llm=llm) as px:
        with px.openai() as client:
            client.chat.completions.create(**chat_body(base))
            client.responses.create(model="gpt-4o", input=base)
            settle()
            raw = client.chat.completions.with_raw_response.create(**chat_body(near))
            assert raw.headers["x-cacheback-synthesized"] == "true"
            assert raw.headers["x-cacheback-hit"] == "false"
            assert raw.headers["x-cacheback-tier"] == "synthesis"
            assert 0.80 <= float(raw.headers["x-cacheback-similarity"]) < 0.92
            assert raw.parse().choices[0].message.content == SYNTH
            with client.chat.completions.with_streaming_response.create(
                **chat_body(near, stream=True, stream_options={"include_usage": True})
            ) as stream:
                assert stream.headers["x-cacheback-synthesized"] == "true"
                chunks = list(stream.parse())
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SYNTH
            assert chunks[-1].usage is not None
            events = list(client.responses.create(model="gpt-4o", input=near, stream=True))
            assert [e.sequence_number for e in events] == list(range(len(events)))
            assert events[-1].type == "response.completed"
            assert events[-1].response.output_text == SYNTH
        with px.anthropic() as claude:
            msgs = [{"role": "user", "content": base}]
            claude.messages.create(model=CLAUDE, max_tokens=200, messages=msgs)
            settle()
            near_msgs = [{"role": "user", "content": near}]
            with claude.messages.stream(model=CLAUDE, max_tokens=200, messages=near_msgs) as stream:
                assert stream.response.headers["x-cacheback-tier"] == "synthesis"
                assert "".join(stream.text_stream) == SYNTH
        with px.http() as http:
            resp = http.post(
                "/v1/chat/completions",
                json=chat_body(near, stream=True),
                headers={"Authorization": "Bearer sk-b"},
            )
        # Another tenant has nothing to synthesize from: a real upstream call.
        assert resp.headers["x-cacheback-tier"] == "upstream"
    upstream = [r for r in fake.requests() if r.model != "synth-mini"]
    synthesis = [r for r in fake.requests() if r.model == "synth-mini"]
    assert len(upstream) == 4 and len(synthesis) == 4
    assert {r.headers["authorization"] for r in synthesis} == {"Bearer sk-synthesis-key"}


@pytest.mark.anyio
async def test_identical_concurrent_misses_make_one_upstream_call(
    proxy: RunningProxy, fake: FakeProvider
) -> None:
    fake.script(Reply(delay=0.4), endpoint="chat")
    headers: list[Any] = []
    async with proxy.async_openai() as client:

        async def ask() -> None:
            raw = await client.chat.completions.with_raw_response.create(**chat_body("What is a monad?"))
            assert raw.parse().choices[0].message.content == "Answer to: What is a monad? [gpt-4o]"
            headers.append(raw.headers)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(ask)
    assert fake.count("chat") == 1
    assert sum(h.get("x-cacheback-coalesced") == "true" for h in headers) == 7
    with proxy.http() as http:
        stats = http.get("/v1/cache/stats").json()
    # The provider's usage is recorded for cost accounting (one call, not eight).
    assert stats["cost"]["upstream"]["input_tokens"] > 0


def test_event_loop_never_blocks(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    watch = LoopWatch()
    with running_proxy(proxy_config(fake, cache_dir), embedder, watch=watch) as px:
        watch.armed = True
        with px.openai() as client:
            for q in ("What is a tensor?", "What is a tensor?", "What's a tensor?"):
                client.chat.completions.create(**chat_body(q))
                settle()
            for _ in client.chat.completions.create(**chat_body("What is a vector?", stream=True)):
                pass
            settle()
            client.chat.completions.create(**chat_body("What is a vector?", stream=True)).close()
            client.models.list()
        with px.http() as http:
            for path in ("/health", "/metrics", "/v1/cache/stats"):
                assert http.get(path).status_code == 200
        watch.armed = False
    assert watch.calls == []
