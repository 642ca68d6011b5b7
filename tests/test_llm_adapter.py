"""The OpenAI-compatible LLM adapter over real HTTP (the fake provider), and its configuration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_provider import FakeProvider, Reply, start_fake_provider
from structlog.testing import capture_logs

from cacheback.adapters.llm import (
    DEFAULT_OPENROUTER_MODEL,
    OPENROUTER_BASE_URL,
    LLMError,
    OpenAICompatibleLLM,
    llm_from_settings,
    same_endpoint,
)
from cacheback.adapters.llm._openai_compatible import _parse_completion, _sse_events
from cacheback.core._errors import ConfigError
from cacheback.core._ports import LLM
from cacheback.core._settings import Settings

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Python?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with start_fake_provider(api_key="sk-cheap") as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    return server


@pytest.fixture
async def llm(fake: FakeProvider) -> AsyncIterator[OpenAICompatibleLLM]:
    adapter = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-cheap", model="cheap-1")
    yield adapter
    await adapter.aclose()


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(cache_dir=tmp_path, **kw)  # type: ignore[arg-type]


# -- the port over HTTP --------------------------------------------------------------------


async def test_complete_returns_text_usage_and_sends_the_key(
    fake: FakeProvider, llm: OpenAICompatibleLLM
) -> None:
    assert isinstance(llm, LLM)
    reply = await llm.complete(MESSAGES, max_tokens=77, timeout=5)
    assert reply.text == "Answer to: What is Python? [cheap-1]"
    assert reply.model == "cheap-1" and reply.finish_reason == "stop"
    assert reply.input_tokens > 0 and reply.output_tokens == len(reply.text.split())
    assert not reply.extra.get("usage_estimated")
    req = fake.last_request("chat")
    assert req.headers["authorization"] == "Bearer sk-cheap"
    assert req.body["model"] == "cheap-1" and req.body["max_tokens"] == 77
    assert req.body["messages"] == MESSAGES and req.body["stream"] is False
    assert "sk-cheap" not in repr(llm)


async def test_stream_yields_deltas_as_they_arrive_and_reports_usage(
    fake: FakeProvider, llm: OpenAICompatibleLLM
) -> None:
    text = "Python is a readable general purpose programming language."
    fake.script(Reply(text=text, chunk_delay=0.15), endpoint="chat")
    stream = llm.stream(MESSAGES, max_tokens=50, timeout=5)
    t0 = time.perf_counter()
    arrivals: list[tuple[float, str]] = []
    async for piece in stream:
        arrivals.append((time.perf_counter() - t0, piece))
    assert "".join(p for _, p in arrivals) == text
    assert len(arrivals) == len(text.split())
    # The first words were in hand long before the last one was sent.
    assert arrivals[-1][0] - arrivals[0][0] > 0.15 * (len(arrivals) - 2)
    assert stream.result is not None
    assert stream.result.text == text and stream.result.output_tokens == len(text.split())
    assert stream.result.input_tokens > 0 and stream.finish_reason == "stop"
    body = fake.last_request("chat").body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_http_error_raises_llm_error(fake: FakeProvider, llm: OpenAICompatibleLLM) -> None:
    fake.fail_next(503, endpoint="chat", message="overloaded")
    with pytest.raises(LLMError) as err:
        await llm.complete(MESSAGES, max_tokens=10, timeout=5)
    assert err.value.status == 503 and "overloaded" in str(err.value)
    fake.fail_next(429, endpoint="chat")
    with pytest.raises(LLMError) as err:
        async for _ in llm.stream(MESSAGES, max_tokens=10, timeout=5):
            pass
    assert err.value.status == 429


async def test_wrong_key_is_refused_by_the_server(fake: FakeProvider) -> None:
    other = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-wrong", model="cheap-1")
    try:
        with pytest.raises(LLMError) as err:
            await other.complete(MESSAGES, max_tokens=10, timeout=5)
        assert err.value.status == 401
    finally:
        await other.aclose()


async def test_mid_stream_error_and_timeout_raise(fake: FakeProvider, llm: OpenAICompatibleLLM) -> None:
    fake.script(Reply(text="one two three four", stream_error_after=2), endpoint="chat")
    got: list[str] = []
    with pytest.raises(LLMError):
        async for piece in llm.stream(MESSAGES, max_tokens=10, timeout=5):
            got.append(piece)
    assert got == ["one ", "two "]
    fake.script(Reply(hang=True), endpoint="chat")
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match="timed out"):
        await llm.complete(MESSAGES, max_tokens=10, timeout=0.3)
    assert time.perf_counter() - t0 < 3


async def test_abandoned_stream_closes_cleanly(fake: FakeProvider, llm: OpenAICompatibleLLM) -> None:
    fake.script(Reply(text="a b c d e f g h", chunk_delay=0.05), endpoint="chat")
    stream = llm.stream(MESSAGES, max_tokens=10, timeout=5)
    assert await stream.__anext__() == "a "
    await stream.aclose()
    assert stream.result is None
    # The connection is usable again.
    assert (await llm.complete(MESSAGES, max_tokens=10, timeout=5)).text


async def test_redirects_are_not_followed(llm: OpenAICompatibleLLM) -> None:
    client = await llm._client()
    assert client.follow_redirects is False


async def test_sse_parser_skips_comments_and_joins_data_lines() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [
            ": OPENROUTER PROCESSING",
            "",
            'data: {"a":',
            "data: 1}",
            "",
            "event: error",
            'data: {"error": {}}',
            "",
            "data: [DONE]",
        ]:
            yield line

    events = [e async for e in _sse_events(lines())]
    assert events == [(None, '{"a":\n1}'), ("error", '{"error": {}}'), (None, "[DONE]")]


def test_missing_usage_is_estimated_and_gateway_errors_raise() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 400}]}
    data = {"choices": [{"message": {"content": "y" * 40}, "finish_reason": "stop"}]}
    reply = _parse_completion(data, "m", body)
    assert reply.extra["usage_estimated"] and reply.input_tokens == 100 and reply.output_tokens == 10
    with pytest.raises(LLMError):
        _parse_completion({"error": {"message": "no credits"}}, "m", body)
    with pytest.raises(LLMError):
        _parse_completion({"choices": []}, "m", body)


def test_openai_host_gets_max_completion_tokens() -> None:
    llm = OpenAICompatibleLLM(base_url="https://api.openai.com/v1", api_key="k", model="gpt-4.1-nano")
    assert llm._body(MESSAGES, 10, stream=False)["max_completion_tokens"] == 10
    other = OpenAICompatibleLLM(base_url="https://openrouter.ai/api/v1", api_key="k", model="m")
    assert other._body(MESSAGES, 10, stream=False)["max_tokens"] == 10


# -- configuration: which endpoint, which key ----------------------------------------------


def _key(llm: object) -> str | None:
    assert isinstance(llm, OpenAICompatibleLLM)
    return llm._api_key


def test_off_or_unconfigured_gives_none_with_a_warning(tmp_path: Path) -> None:
    assert llm_from_settings(settings(tmp_path), env={"OPENROUTER_API_KEY": "or"}) is None
    with capture_logs() as logs:
        assert llm_from_settings(settings(tmp_path, synthesis_mode="auto"), env={}) is None
    assert any("synthesis disabled" in e["event"] and e["log_level"] == "warning" for e in logs)


def test_openrouter_default(tmp_path: Path) -> None:
    llm = llm_from_settings(
        settings(tmp_path, synthesis_mode="auto"),
        env={"OPENROUTER_API_KEY": "or-key", "OPENAI_API_KEY": "oa"},
    )
    assert isinstance(llm, OpenAICompatibleLLM)
    assert llm.base_url == OPENROUTER_BASE_URL and llm.model == DEFAULT_OPENROUTER_MODEL
    assert llm.model == "google/gemini-2.5-flash-lite" and _key(llm) == "or-key"
    custom = llm_from_settings(
        settings(tmp_path, synthesis_mode="always", synthesis_model="google/gemini-2.0-flash-lite"),
        env={"OPENROUTER_API_KEY": "or-key"},
    )
    assert isinstance(custom, OpenAICompatibleLLM) and custom.model == "google/gemini-2.0-flash-lite"


def test_explicit_endpoint_gets_only_its_own_key(tmp_path: Path) -> None:
    env = {"OPENROUTER_API_KEY": "or-key", "OPENAI_API_KEY": "oa-key"}
    llm = llm_from_settings(
        settings(
            tmp_path,
            synthesis_mode="auto",
            synthesis_base_url="https://llm.example.com/v1",
            synthesis_api_key="ex-key",
            synthesis_model="small",
        ),
        env=env,
    )
    assert isinstance(llm, OpenAICompatibleLLM) and llm.host == "llm.example.com" and _key(llm) == "ex-key"
    # Another host never gets the OpenRouter or OpenAI key.
    with capture_logs() as logs:
        none = llm_from_settings(
            settings(
                tmp_path,
                synthesis_mode="auto",
                synthesis_base_url="https://llm.example.com/v1",
                synthesis_model="small",
            ),
            env=env,
        )
    assert none is None and any("no API key" in e["event"] for e in logs)
    # OpenAI's own host may use OPENAI_API_KEY; OpenRouter's its own key.
    oa = llm_from_settings(
        settings(
            tmp_path,
            synthesis_mode="auto",
            synthesis_base_url="https://api.openai.com/v1",
            synthesis_model="gpt-4.1-nano",
        ),
        env=env,
    )
    assert _key(oa) == "oa-key"
    orr = llm_from_settings(
        settings(tmp_path, synthesis_mode="auto", synthesis_base_url="https://openrouter.ai/api/v1"), env=env
    )
    assert _key(orr) == "or-key" and isinstance(orr, OpenAICompatibleLLM)
    assert orr.model == DEFAULT_OPENROUTER_MODEL


def test_explicit_key_without_base_url_is_never_sent_to_a_default_host(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert (
            llm_from_settings(settings(tmp_path, synthesis_mode="auto", synthesis_api_key="mine"), env={})
            is None
        )
    assert any("ignored" in e["event"] for e in logs)
    llm = llm_from_settings(
        settings(tmp_path, synthesis_mode="auto", synthesis_api_key="mine"), env={"OPENROUTER_API_KEY": "or"}
    )
    assert _key(llm) == "or"


def test_the_proxy_itself_is_refused(tmp_path: Path) -> None:
    for base in ("http://localhost:8080/v1", "http://127.0.0.1:8080/v1", "http://0.0.0.0:8080"):
        s = settings(
            tmp_path,
            synthesis_mode="auto",
            synthesis_base_url=base,
            synthesis_api_key="k",
            synthesis_model="m",
        )
        with pytest.raises(ConfigError, match="proxy"):
            llm_from_settings(s, proxy_address="0.0.0.0:8080", env={})
    ok = settings(
        tmp_path,
        synthesis_mode="auto",
        synthesis_base_url="http://127.0.0.1:9000/v1",
        synthesis_api_key="k",
        synthesis_model="m",
    )
    assert llm_from_settings(ok, proxy_address="127.0.0.1:8080", env={}) is not None
    assert same_endpoint("http://localhost:8080/v1", "http://127.0.0.1:8080")
    assert not same_endpoint("https://openrouter.ai/api/v1", "127.0.0.1:443")


def test_bad_base_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        llm_from_settings(
            settings(tmp_path, synthesis_mode="auto", synthesis_base_url="ftp://x", synthesis_api_key="k"),
            env={},
        )


def test_settings_from_env_read_the_synthesis_variables(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "CACHEBACK_SYNTHESIS_MODE": "auto",
            "CACHEBACK_SYNTHESIS_MODEL": "small",
            "CACHEBACK_SYNTHESIS_BASE_URL": "https://llm.example.com/v1",
            "CACHEBACK_SYNTHESIS_API_KEY": "secret-key",
            "CACHEBACK_SYNTHESIS_TIMEOUT_S": "2.5",
            "CACHEBACK_SYNTHESIS_STORE": "true",
        },
        cache_dir=tmp_path,
    )
    assert s.synthesis_mode == "auto" and s.synthesis_timeout_s == 2.5 and s.synthesis_store is True
    assert "secret-key" not in repr(s)
    llm = llm_from_settings(s, env={})
    assert isinstance(llm, OpenAICompatibleLLM) and llm.model == "small" and _key(llm) == "secret-key"
