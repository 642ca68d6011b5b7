"""CachedOpenAI / AsyncCachedOpenAI through the real openai SDK over HTTP to the fake."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from _client_helpers import openai_args, user
from fake_provider import FakeProvider, Reply
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from cacheback import AsyncCachedOpenAI, CachebackBlocked, CachedOpenAI

pytestmark = pytest.mark.anyio


@pytest.fixture
def client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[CachedOpenAI]:
    c = CachedOpenAI(**openai_args(fake, cache_dir, embedder))
    yield c
    c.close()


def ask(client: CachedOpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=kw.pop("model", "gpt-4o"), messages=kw.pop("messages", user(text)), **kw
    )


def test_second_identical_call_is_a_hit_with_sdk_types(client: CachedOpenAI, fake: FakeProvider) -> None:
    first = ask(client, "What is Python?")
    assert isinstance(first, ChatCompletion)
    assert first.cacheback_hit is False and first.cacheback_synthesized is False  # type: ignore[attr-defined]
    assert first.cacheback.tier == "upstream"  # type: ignore[attr-defined]
    second = ask(client, "What is Python?")
    assert isinstance(second, ChatCompletion)
    assert second.cacheback_hit is True  # type: ignore[attr-defined]
    assert second.cacheback.tier == "exact"  # type: ignore[attr-defined]
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.id == first.id  # the provider's response, replayed: its own id
    assert fake.count("chat") == 1
    assert "cacheback" not in second.model_dump()


def test_paraphrase_hits(client: CachedOpenAI, fake: FakeProvider) -> None:
    first = ask(client, "How do I reverse a list in Python?")
    client.cache.flush()  # answers are written behind; paraphrases need the stored vector
    hit = ask(client, "How can I reverse a list in Python?")
    assert hit.cacheback_hit is True and hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
    assert hit.cacheback.similarity >= 0.92  # type: ignore[attr-defined]
    assert hit.choices[0].message.content == first.choices[0].message.content
    assert fake.count("chat") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o-mini"},
        {"messages": [{"role": "system", "content": "Answer in French."}, *user("What is Python?")]},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                *user("What is Python?"),
            ]
        },
        {"temperature": 1.5},
    ],
    ids=["model", "system", "earlier-turn", "temperature"],
)
def test_a_different_scope_never_hits(
    client: CachedOpenAI, fake: FakeProvider, change: dict[str, Any]
) -> None:
    ask(client, "What is Python?")
    other = ask(client, "What is Python?", **change)
    assert other.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_stream_miss_then_stream_hit(client: CachedOpenAI, fake: FakeProvider) -> None:
    stream = ask(client, "Explain quantum computing", stream=True)
    assert isinstance(stream, openai.Stream)
    assert stream.cacheback_hit is False  # type: ignore[attr-defined]
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    live_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the write-behind may take a moment; a plain call after the stream hits
    for _ in range(50):
        hit = ask(client, "Explain quantum computing", stream=True)
        if hit.cacheback_hit:  # type: ignore[attr-defined]
            break
        list(hit)
        anyio.run(anyio.sleep, 0.05)
    assert isinstance(hit, openai.Stream)
    with hit as s:
        replay = [c for c in s]
    assert all(isinstance(c, ChatCompletionChunk) for c in replay)
    assert "".join(c.choices[0].delta.content or "" for c in replay if c.choices) == live_text
    assert fake.count("chat") == 1


def test_stream_closed_early_is_not_cached(client: CachedOpenAI, fake: FakeProvider) -> None:
    fake.script(Reply(text="one two three four five six seven eight nine ten " * 5, chunk_delay=0.01))
    stream = ask(client, "Tell me a long story about dragons", stream=True)
    for _ in stream:
        break
    stream.close()
    again = ask(client, "Tell me a long story about dragons")
    assert again.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_errors_surface_as_sdk_errors_and_are_not_cached(client: CachedOpenAI, fake: FakeProvider) -> None:
    fake.fail_next(500, endpoint="chat")
    with pytest.raises(openai.InternalServerError):
        ask(client, "What is Rust?")
    ok = ask(client, "What is Rust?")
    assert ok.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_timeout_surfaces_as_sdk_error(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    fake.script(Reply(delay=2.0), endpoint="chat")
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, timeout=0.3)) as c:
        with pytest.raises(openai.APITimeoutError):
            ask(c, "What is Zig?")
        assert ask(c, "What is Zig?").cacheback_hit is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(finish_reason="length"),
        Reply(finish_reason="content_filter"),
        Reply(refusal="I can't help with that."),
    ],
    ids=["length", "filter", "refusal"],
)
def test_truncated_filtered_and_refused_answers_are_not_cached(
    client: CachedOpenAI, fake: FakeProvider, reply: Reply
) -> None:
    fake.script(reply, endpoint="chat")
    ask(client, "Write a poem about the sea")
    assert ask(client, "Write a poem about the sea").cacheback_hit is False  # type: ignore[attr-defined]


def test_n_greater_than_one_is_never_cached(client: CachedOpenAI, fake: FakeProvider) -> None:
    ask(client, "Name a colour", n=2)
    second = ask(client, "Name a colour", n=2)
    assert second.cacheback_hit is False and second.cacheback.tier == "bypass"  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_per_request_controls(client: CachedOpenAI, fake: FakeProvider) -> None:
    ask(client, "What is Go?", cacheback={"no_store": True})
    assert ask(client, "What is Go?", cacheback={"no_store": True}).cacheback_hit is False  # type: ignore[attr-defined]
    ask(client, "What is Go?")
    assert ask(client, "What is Go?").cacheback_hit is True  # type: ignore[attr-defined]
    bypass = ask(client, "What is Go?", cacheback={"bypass": True})
    assert bypass.cacheback_hit is False  # type: ignore[attr-defined]
    assert "cacheback" not in fake.last_request("chat").body
    ask(client, "What is Go?", cacheback={"namespace": "tenant-x"})
    assert ask(client, "What is Go?", cacheback={"namespace": "tenant-x"}).cacheback_hit is True  # type: ignore[attr-defined]
    assert fake.count("chat") == 5
    with pytest.raises(ValueError):
        ask(client, "What is Go?", cacheback={"nonsense": 1})


def test_per_request_ttl(client: CachedOpenAI, fake: FakeProvider) -> None:
    ask(client, "What is Elm?", cacheback={"ttl": 0.3})
    assert ask(client, "What is Elm?").cacheback_hit is True  # type: ignore[attr-defined]
    anyio.run(anyio.sleep, 0.5)
    assert ask(client, "What is Elm?").cacheback_hit is False  # type: ignore[attr-defined]


def test_responses_api_cached(client: CachedOpenAI, fake: FakeProvider) -> None:
    first = client.responses.create(model="gpt-4o", input="What is the capital of France?")
    assert isinstance(first, Response) and first.cacheback_hit is False  # type: ignore[attr-defined]
    second = client.responses.create(model="gpt-4o", input="What is the capital of France?")
    assert isinstance(second, Response) and second.cacheback_hit is True  # type: ignore[attr-defined]
    assert second.output_text == first.output_text
    stream = client.responses.create(model="gpt-4o", input="What is the capital of France?", stream=True)
    assert isinstance(stream, openai.Stream) and stream.cacheback_hit is True  # type: ignore[attr-defined]
    deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == first.output_text
    assert fake.count("responses") == 1


def test_uncached_features_work_unchanged(client: CachedOpenAI, fake: FakeProvider) -> None:
    models = client.models.list()
    assert len(list(models)) >= 1
    emb = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(emb.data[0].embedding) > 0
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user("Raw please"))
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content
    copy = client.with_options(timeout=5.0)
    assert ask(copy, "What is Python?").cacheback_hit is False  # type: ignore[attr-defined]
    assert ask(client, "What is Python?").cacheback_hit is True  # type: ignore[attr-defined]


def test_negative_cache_blocks_and_options(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        entry = c.cache.negative.add(
            "How to hack into systems", reason="refusal", category="safety", severity=5
        )
        with pytest.raises(CachebackBlocked) as info:
            ask(c, "How do I hack into computer systems?")
        assert info.value.reason == "refusal"
        with pytest.raises(CachebackBlocked):  # skipping the cache does not skip the blocklist
            ask(c, "How do I hack into computer systems?", cacheback={"bypass": True})
        with pytest.raises(CachebackBlocked):
            ask(c, "How do I hack into computer systems?", n=2)
        assert fake.count("chat") == 0
        assert c.cache.negative.check("How do I hack computers")["entry_id"] == entry  # type: ignore[index]
        assert c.cache.stats["blocked"] == 3
    seen: list[dict[str, Any]] = []
    with CachedOpenAI(
        **openai_args(fake, cache_dir, embedder, on_negative_hit=lambda m: seen.append(m) or "refused")
    ) as c:
        assert ask(c, "How to hack into systems") == "refused"
        assert seen[0]["reason"] == "refusal"
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, on_negative_hit="skip")) as c:
        assert ask(c, "How to hack into systems").cacheback_hit is False  # type: ignore[attr-defined]
        assert fake.count("chat") == 1


def test_sync_client_from_eight_threads(client: CachedOpenAI, fake: FakeProvider) -> None:
    questions = [f"What is the tallest mountain in country {i}?" for i in range(4)]

    def work(i: int) -> tuple[int, str]:
        r = ask(client, questions[i % 4])
        return i % 4, r.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(64)))
    for idx, text in results:
        assert questions[idx] in text
    assert fake.count("chat") == 4  # concurrent identical misses coalesce into one call each


def test_cache_failure_passes_through(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    with CachedOpenAI(**openai_args(fake, blocker, embedder)) as c:
        r = ask(c, "What is Lua?")
        assert r.cacheback_hit is False and "unavailable" in (r.cacheback.reason or "")  # type: ignore[attr-defined]
        assert ask(c, "What is Lua?").choices[0].message.content
    assert fake.count("chat") == 2


async def test_async_client_hits_and_streams(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        first = await c.chat.completions.create(model="gpt-4o", messages=user("What is asyncio?"))
        assert first.cacheback_hit is False  # type: ignore[attr-defined]
        hit = await c.chat.completions.create(model="gpt-4o", messages=user("What is asyncio?"))
        assert isinstance(hit, ChatCompletion) and hit.cacheback_hit is True  # type: ignore[attr-defined]
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=user("What is asyncio?"), stream=True
        )
        assert isinstance(stream, openai.AsyncStream) and stream.cacheback_hit is True  # type: ignore[attr-defined]
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        assert text == first.choices[0].message.content
        live = await c.chat.completions.create(model="gpt-4o", messages=user("What is trio?"), stream=True)
        assert isinstance(live, openai.AsyncStream) and live.cacheback_hit is False  # type: ignore[attr-defined]
        async with live as s:
            live_text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        assert "What is trio?" in live_text
        stats = await c.cache.stats()
        assert stats["hits"] == 2
    assert fake.count("chat") == 2


async def test_100_concurrent_identical_requests_make_one_upstream_call(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    fake.script(Reply(delay=0.3), endpoint="chat")
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        results: list[Any] = []

        async def one() -> None:
            results.append(
                await c.chat.completions.create(model="gpt-4o", messages=user("What is a coroutine?"))
            )

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
        assert fake.count("chat") == 1
        texts = {r.choices[0].message.content for r in results}
        assert len(texts) == 1 and len({id(r) for r in results}) == 100


async def test_concurrent_failure_reaches_every_waiter(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    fake.script(Reply(status=500, delay=0.3), endpoint="chat")
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        errors: list[BaseException] = []

        async def one() -> None:
            try:
                await c.chat.completions.create(model="gpt-4o", messages=user("What is a future?"))
            except openai.InternalServerError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert len(errors) == 20
        assert fake.count("chat") == 1
        # Each waiter has its own exception object (its own traceback), all alike.
        assert len({id(e) for e in errors}) == 20
        assert {(type(e), e.status_code, str(e)) for e in errors if isinstance(e, openai.APIStatusError)} == {
            (openai.InternalServerError, 500, str(errors[0]))
        }
        ok = await c.chat.completions.create(model="gpt-4o", messages=user("What is a future?"))
        assert ok.cacheback_hit is False  # type: ignore[attr-defined]


def test_cache_disabled_is_a_plain_client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, cache_enabled=False)) as c:
        ask(c, "What is Kotlin?")
        again = ask(c, "What is Kotlin?")
        assert again.cacheback_hit is False and again.cacheback.tier == "bypass"  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_ignored_params_leave_the_scope(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, ignore_params=["temperature"])) as c:
        ask(c, "What is Scala?", temperature=0.2)
        assert ask(c, "What is Scala?", temperature=0.9).cacheback_hit is True  # type: ignore[attr-defined]
        assert ask(c, "What is Scala?", top_p=0.5).cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_bad_cache_arguments_fail_at_construction(fake: FakeProvider, cache_dir: Path) -> None:
    from cacheback import ConfigError

    with pytest.raises(ConfigError):
        CachedOpenAI(**openai_args(fake, cache_dir, None, similarity_threshold=1.5))
    with pytest.raises(ConfigError):
        CachedOpenAI(**openai_args(fake, cache_dir, None, synthesis_mode="sometimes"))
    with pytest.raises(ConfigError):
        CachedOpenAI(**openai_args(fake, cache_dir, None, on_negative_hit="explode"))
