"""The head start: the SDK builds its request during the lookup and sends it only on a miss."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai
import pytest
from _client_helpers import anthropic_args, openai_args, user
from fake_provider import FakeProvider, Reply

from cacheback import AsyncCachedAnthropic, AsyncCachedOpenAI, CachedOpenAI
from cacheback.core._batching import EARLY_PREPARE_LIMIT, prepare_early
from cacheback.core._early import Abandoned, Gate

pytestmark = pytest.mark.anyio

FIRST = "How do I reverse a list in Python?"
PARAPHRASE = "How can I reverse a list in Python?"
OTHER = "What is the boiling point of water at sea level?"


class Spy:
    """Counts the SDK's ``_prepare_request`` calls: each one is a request built to be sent."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built = 0
        real = client._prepare_request
        spy = self

        if asyncio.iscoroutinefunction(real):

            async def counting(request: Any) -> None:
                spy.built += 1
                await real(request)

        else:

            def counting(request: Any) -> None:  # type: ignore[misc]
                spy.built += 1
                real(request)

        monkeypatch.setattr(client, "_prepare_request", counting)


# -- the decision -------------------------------------------------------------------


def test_prepare_early_only_with_room_to_spare() -> None:
    assert prepare_early(1, 0)
    assert prepare_early(EARLY_PREPARE_LIMIT, 0)
    assert not prepare_early(EARLY_PREPARE_LIMIT + 1, 0)  # a burst: keep the CPU for inference
    assert not prepare_early(1, 3)  # a backlog in front of the embedder
    assert not prepare_early(0, 0)


# -- the gates ----------------------------------------------------------------------


async def test_async_gate_opens_or_abandons() -> None:
    opened, abandoned = Gate(), Gate()
    opened.open()
    await opened.wait()
    abandoned.abandon()
    with pytest.raises(Abandoned):
        await abandoned.wait()


def test_sync_gate_holds_a_thread_until_decided() -> None:
    gate = Gate()
    result: list[str] = []

    def worker() -> None:
        try:
            gate.wait_blocking()
            result.append("sent")
        except Abandoned:
            result.append("abandoned")

    t = threading.Thread(target=worker)
    t.start()
    t.join(0.05)
    assert t.is_alive() and not result  # parked
    gate.abandon()
    t.join(5)
    assert result == ["abandoned"]


def test_an_undecided_sync_gate_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from cacheback.core import _early

    monkeypatch.setattr(_early, "SYNC_GATE_TIMEOUT_S", 0.05)
    with pytest.raises(Abandoned):
        Gate().wait_blocking()  # nobody decides: the parked thread must still end


# -- through the real SDKs ------------------------------------------------------------


async def test_async_semantic_hit_builds_the_request_but_never_sends_it(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        spy = Spy(client, monkeypatch)
        first = await client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
        assert spy.built == 1 and fake.count("chat") == 1  # the miss: built once, sent once
        await client.cache.flush()
        hit = await client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
        assert hit.choices[0].message.content == first.choices[0].message.content
        # The SDK built the paraphrase's request while the cache embedded it, then dropped it.
        assert spy.built == 2
        await asyncio.sleep(0.05)
        assert fake.count("chat") == 1
        exact = await client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
        assert exact.cacheback.tier == "exact" and spy.built == 2  # type: ignore[attr-defined]


async def test_async_miss_is_sent_once_and_errors_keep_their_sdk_type(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        await client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
        await client.cache.flush()
        fake.script(Reply(status=500), endpoint="chat")
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o", messages=user(OTHER))
        assert fake.count("chat") == 2
        ok = await client.chat.completions.create(model="gpt-4o", messages=user(OTHER))
        assert ok.cacheback.tier == "upstream" and fake.count("chat") == 3  # type: ignore[attr-defined]


async def test_async_stream_hit_abandons_the_prepared_stream(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncCachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as client:
        spy = Spy(client, monkeypatch)
        await client.messages.create(model="claude-x", max_tokens=64, messages=user(FIRST))
        await client.cache.flush()
        stream = await client.messages.create(
            model="claude-x", max_tokens=64, messages=user(PARAPHRASE), stream=True
        )
        text = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
        assert text and stream.cacheback_hit is True  # type: ignore[attr-defined]
        assert spy.built == 2
        await asyncio.sleep(0.05)
        assert fake.count("messages") == 1
        assert isinstance(client, anthropic.AsyncAnthropic)


@pytest.fixture
def sync_client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[CachedOpenAI]:
    c = CachedOpenAI(**openai_args(fake, cache_dir, embedder))
    yield c
    c.close()


def test_sync_hit_abandons_and_miss_sends(
    sync_client: CachedOpenAI, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(sync_client, monkeypatch)
    first = sync_client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
    assert spy.built == 1 and fake.count("chat") == 1
    sync_client.cache.flush()
    hit = sync_client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
    assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
    assert hit.choices[0].message.content == first.choices[0].message.content
    assert spy.built == 2
    miss = sync_client.chat.completions.create(model="gpt-4o", messages=user(OTHER))
    assert miss.cacheback.tier == "upstream" and spy.built == 3  # type: ignore[attr-defined]
    assert fake.count("chat") == 2  # the abandoned request never left


def test_sync_bad_arguments_still_fail_like_the_sdk(sync_client: CachedOpenAI, fake: FakeProvider) -> None:
    sync_client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
    sync_client.cache.flush()
    with pytest.raises(TypeError):
        sync_client.chat.completions.create(model="gpt-4o", messages=user(OTHER), not_a_param=1)
    assert fake.count("chat") == 1


class SlowEmbedder:
    """The real embedder, slowed down so that a caller can give up during the lookup."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self.delay = delay
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: Any) -> Any:
        import time

        time.sleep(self.delay)  # runs on the embedding worker thread
        return self._inner.embed(texts)

    def describe(self) -> dict[str, Any]:
        return self._inner.describe()


async def test_a_caller_that_gives_up_during_the_lookup_costs_no_provider_call(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowEmbedder(embedder, 0.0)
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, slow)) as client:
        spy = Spy(client, monkeypatch)
        await client.chat.completions.create(model="gpt-4o", messages=user(FIRST))
        await client.cache.flush()
        assert fake.count("chat") == 1
        slow.delay = 0.4
        with anyio.move_on_after(0.1) as scope:
            await client.chat.completions.create(model="gpt-4o", messages=user(OTHER))
        assert scope.cancelled_caught
        await asyncio.sleep(0.8)  # the lookup ends meanwhile: a miss, with nobody waiting
        assert spy.built == 2  # the head start did build it ...
        assert fake.count("chat") == 1  # ... and nothing was sent
        slow.delay = 0.0
        again = await client.chat.completions.create(model="gpt-4o", messages=user(OTHER))
        assert again.cacheback.tier == "upstream" and fake.count("chat") == 2  # type: ignore[attr-defined]
