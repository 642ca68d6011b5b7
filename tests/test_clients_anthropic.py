"""CachedAnthropic / AsyncCachedAnthropic through the real anthropic SDK over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import anyio
import pytest
from _client_helpers import anthropic_args, user
from anthropic.types import Message
from fake_provider import FakeProvider, Reply

from cacheback import AsyncCachedAnthropic, CachedAnthropic

pytestmark = pytest.mark.anyio
MODEL = "claude-sonnet-4-20250514"


def ask(client: CachedAnthropic, text: str, **kw: Any) -> Any:
    return client.messages.create(
        model=kw.pop("model", MODEL),
        max_tokens=kw.pop("max_tokens", 1024),
        messages=kw.pop("messages", user(text)),
        **kw,
    )


def wait_for_hit(fn: Any) -> Any:
    for _ in range(50):
        r = fn()
        if r.cacheback_hit:
            return r
        anyio.run(anyio.sleep, 0.05)
    return r


def test_message_hit_and_paraphrase(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        first = ask(c, "What is the capital of France?")
        assert isinstance(first, Message) and first.cacheback_hit is False  # type: ignore[attr-defined]
        c.cache.flush()
        hit = ask(c, "What's the capital city of France?")
        assert isinstance(hit, Message) and hit.cacheback_hit is True  # type: ignore[attr-defined]
        assert hit.content[0].text == first.content[0].text  # type: ignore[union-attr]
        assert ask(c, "What is the capital of France?", system="Answer like a pirate.").cacheback_hit is False  # type: ignore[attr-defined]
        assert ask(c, "What is the capital of France?", model="claude-haiku-4").cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("messages") == 3


def test_stream_create_and_stream_helper(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        live = ask(c, "Explain photosynthesis", stream=True)
        assert isinstance(live, anthropic.Stream) and live.cacheback_hit is False  # type: ignore[attr-defined]
        live_text = "".join(e.delta.text for e in live if e.type == "content_block_delta")

        def stream_call() -> Any:
            s = ask(c, "Explain photosynthesis", stream=True)
            if not s.cacheback_hit:
                list(s)
            return s

        hit = wait_for_hit(stream_call)
        assert isinstance(hit, anthropic.Stream)
        with hit as events:
            text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
        assert text == live_text
        with c.messages.stream(model=MODEL, max_tokens=1024, messages=user("Explain photosynthesis")) as s:
            assert s.cacheback_hit is True  # type: ignore[attr-defined]
            helper_text = "".join(s.text_stream)
            final = s.get_final_message()
        assert helper_text == live_text and final.content[0].text == live_text  # type: ignore[union-attr]
        with c.messages.stream(model=MODEL, max_tokens=1024, messages=user("Explain mitochondria")) as s:
            assert s.cacheback_hit is False  # type: ignore[attr-defined]
            miss_text = "".join(s.text_stream)
        assert "Explain mitochondria" in miss_text
        again = wait_for_hit(lambda: ask(c, "Explain mitochondria"))
        assert again.content[0].text == miss_text
    assert fake.count("messages") == 2


def test_errors_and_stop_reasons(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        fake.fail_next(529, endpoint="messages")
        with pytest.raises(anthropic.APIStatusError):
            ask(c, "What is Haskell?")
        fake.script(Reply(finish_reason="max_tokens"), endpoint="messages")
        ask(c, "What is Haskell?")
        assert ask(c, "What is Haskell?").cacheback_hit is False  # type: ignore[attr-defined]
        assert ask(c, "What is Haskell?").cacheback_hit is True  # type: ignore[attr-defined]
    assert fake.count("messages") == 3


async def test_async_client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    async with AsyncCachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        first = await c.messages.create(model=MODEL, max_tokens=100, messages=user("What is a monad?"))
        assert first.cacheback_hit is False  # type: ignore[attr-defined]
        hit = await c.messages.create(model=MODEL, max_tokens=100, messages=user("What is a monad?"))
        assert isinstance(hit, Message) and hit.cacheback_hit is True  # type: ignore[attr-defined]
        stream = await c.messages.create(
            model=MODEL, max_tokens=100, messages=user("What is a monad?"), stream=True
        )
        assert isinstance(stream, anthropic.AsyncStream) and stream.cacheback_hit is True  # type: ignore[attr-defined]
        text = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
        assert text == first.content[0].text  # type: ignore[union-attr]
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=user("What is a monad?")) as s:
            assert s.cacheback_hit is True  # type: ignore[attr-defined]
            assert "".join([t async for t in s.text_stream]) == text
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=user("What is a functor?")) as s:
            assert s.cacheback_hit is False  # type: ignore[attr-defined]
            assert "functor" in "".join([t async for t in s.text_stream])
    assert fake.count("messages") == 2
