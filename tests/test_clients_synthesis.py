"""The synthesis tier through the drop-in clients: SDK types, streams fed live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from _client_helpers import anthropic_args, openai_args, user
from anthropic.types import Message
from fake_provider import FakeProvider, Reply
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cacheback import AsyncCachedAnthropic, AsyncCachedOpenAI, CachedOpenAI
from cacheback.adapters.llm import OpenAICompatibleLLM

pytestmark = pytest.mark.anyio
SEED = "Explain photosynthesis"
RELATED = "How does photosynthesis work in plants?"  # cosine about 0.83 to SEED


def cheap(fake: FakeProvider) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-cheap", model="cheap-model")


def test_sync_synthesis_plain_and_stream(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    llm = cheap(fake)
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, synthesis_mode="auto", llm=llm)) as c:
        c.chat.completions.create(model="gpt-4o", messages=user(SEED))
        c.cache.flush()
        upstream_calls = [r for r in fake.requests("chat") if r.model == "gpt-4o"]
        assert len(upstream_calls) == 1
        r = c.chat.completions.create(model="gpt-4o", messages=user(RELATED))
        assert isinstance(r, ChatCompletion)
        assert r.cacheback_synthesized is True and r.cacheback_hit is False  # type: ignore[attr-defined]
        assert r.model == "gpt-4o" and "[cheap-model]" in (r.choices[0].message.content or "")
        s = c.chat.completions.create(model="gpt-4o", messages=user(RELATED), stream=True)
        assert isinstance(s, openai.Stream) and s.cacheback_synthesized is True  # type: ignore[attr-defined]
        chunks = list(s)
        assert all(isinstance(ch, ChatCompletionChunk) for ch in chunks)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert "[cheap-model]" in text
        assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 1
        c._cacheback.runner().call(llm.aclose)  # a given LLM is the caller's to close
    assert len([r for r in fake.requests("chat") if r.model == "gpt-4o"]) == 1


async def test_async_streaming_synthesis_arrives_progressively(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    llm = cheap(fake)
    async with AsyncCachedOpenAI(
        **openai_args(fake, cache_dir, embedder, synthesis_mode="auto", llm=llm)
    ) as c:
        await c.chat.completions.create(model="gpt-4o", messages=user(SEED))
        await c.cache.flush()
        fake.script(
            Reply(text="Plants turn light into sugar, step by step, in their leaves.", chunk_delay=0.05)
        )
        s = await c.chat.completions.create(model="gpt-4o", messages=user(RELATED), stream=True)
        assert isinstance(s, openai.AsyncStream) and s.cacheback_synthesized is True  # type: ignore[attr-defined]
        import time

        arrivals = []
        pieces = []
        async for ch in s:
            if ch.choices and ch.choices[0].delta.content:
                arrivals.append(time.perf_counter())
                pieces.append(ch.choices[0].delta.content)
        assert "".join(pieces) == "Plants turn light into sugar, step by step, in their leaves."
        assert len(arrivals) > 3
        assert arrivals[-1] - arrivals[0] > 0.1  # spread over the cheap model's pacing, not one burst
    await llm.aclose()


async def test_declined_synthesis_goes_upstream_once(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    from cacheback.core._synthesis import DECLINE_MARKER

    llm = cheap(fake)
    async with AsyncCachedOpenAI(
        **openai_args(fake, cache_dir, embedder, synthesis_mode="auto", llm=llm)
    ) as c:
        await c.chat.completions.create(model="gpt-4o", messages=user(SEED))
        await c.cache.flush()
        fake.script(Reply(text=DECLINE_MARKER))
        r = await c.chat.completions.create(model="gpt-4o", messages=user(RELATED))
        assert r.cacheback_synthesized is False and r.cacheback.tier == "upstream"  # type: ignore[attr-defined]
    await llm.aclose()
    assert len([q for q in fake.requests("chat") if q.model == "gpt-4o"]) == 2


async def test_anthropic_synthesis_message_and_stream_helper(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    llm = cheap(fake)
    args = anthropic_args(fake, cache_dir, embedder, synthesis_mode="auto", llm=llm)
    async with AsyncCachedAnthropic(**args) as c:
        await c.messages.create(model="claude-x", max_tokens=100, messages=user(SEED))
        await c.cache.flush()
        m = await c.messages.create(model="claude-x", max_tokens=100, messages=user(RELATED))
        assert isinstance(m, Message) and m.cacheback_synthesized is True  # type: ignore[attr-defined]
        stream = await c.messages.create(
            model="claude-x", max_tokens=100, messages=user(RELATED), stream=True
        )
        assert isinstance(stream, anthropic.AsyncStream)
        text = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
        assert "[cheap-model]" in text
        async with c.messages.stream(model="claude-x", max_tokens=100, messages=user(RELATED)) as s:
            assert s.cacheback_synthesized is True  # type: ignore[attr-defined]
            assert "[cheap-model]" in "".join([t async for t in s.text_stream])
    await llm.aclose()
    assert fake.count("messages") == 1
