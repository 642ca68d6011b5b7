"""A stream the provider cuts short (no end marker) or fills with data that is not JSON:
the cached clients raise the SDK's own error, as the proxy makes the SDKs do, and cache
nothing (real SDK clients over HTTP to the fake provider)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from _client_helpers import anthropic_args, openai_args, user
from fake_provider import FakeProvider, Reply

from cacheback import AsyncCachedOpenAI, CachedAnthropic, CachedOpenAI

pytestmark = pytest.mark.anyio

CLAUDE = "claude-sonnet-4-20250514"


def tier_of_repeat(client: CachedOpenAI, question: str) -> str:
    client.cache.flush()
    again = client.chat.completions.create(model="gpt-4o", messages=user(question))
    return str(again.cacheback.tier)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"stream_cut_after": 3}, "ended before its end marker"),
        ({"stream_cut_after": -1}, "ended before its end marker"),  # only [DONE] is missing
        ({"stream_garbage_after": 2}, "not JSON"),
    ],
)
def test_a_cut_or_unreadable_chat_stream_raises_and_is_not_cached(
    fake: FakeProvider, cache_dir: Path, embedder: Any, fault: dict[str, int], message: str
) -> None:
    fake.script(Reply(**fault), endpoint="chat")  # type: ignore[arg-type]
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        with pytest.raises(openai.APIError) as info:
            for _ in client.chat.completions.create(model="gpt-4o", messages=user("Cut me"), stream=True):
                pass
        assert message in info.value.message
        assert tier_of_repeat(client, "Cut me") == "upstream"
        # The same stream, whole, is cached (so the check above can fail).
        for _ in client.chat.completions.create(model="gpt-4o", messages=user("Keep me"), stream=True):
            pass
        assert tier_of_repeat(client, "Keep me") == "exact"
    assert fake.count("chat") == 3


async def test_the_async_client_and_the_responses_api_raise_too(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    fake.script(Reply(stream_cut_after=-1), endpoint="chat")
    fake.script(Reply(stream_cut_after=-1), endpoint="responses")
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=user("Cut"), stream=True)
        with pytest.raises(openai.APIError, match="end marker"):
            async for _ in stream:
                pass
        events: list[Any] = []
        with pytest.raises(openai.APIError, match="end marker"):
            async for event in await client.responses.create(model="gpt-4o", input="Cut", stream=True):
                events.append(event)
        assert events and not any(e.type == "response.completed" for e in events)
        await client.cache.flush()
        again = await client.responses.create(model="gpt-4o", input="Cut")
        assert again.cacheback.tier == "upstream"


def test_anthropic_streams_cut_before_message_stop_raise(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    fake.script(Reply(stream_cut_after=-1), Reply(stream_cut_after=-1), endpoint="messages")
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as claude:
        ask = {"model": CLAUDE, "max_tokens": 10, "messages": user("Cut before the stop")}
        with pytest.raises(anthropic.APIStatusError) as info:
            for _ in claude.messages.create(**ask, stream=True):
                pass
        assert info.value.body["error"]["message"].startswith("The upstream stream ended")  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError), claude.messages.stream(**ask) as stream:
            for _ in stream.text_stream:
                pass
        claude.cache.flush()
        again = claude.messages.create(**ask)
        assert again.cacheback.tier == "upstream"
    assert fake.count("messages") == 3
