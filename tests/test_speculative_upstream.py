"""speculative_upstream: a clear miss's call leaves before its question embeds, and a hit
found after all takes it back; no answer ever depends on the miss predictor."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from _client_helpers import anthropic_args, openai_args, user
from _proxy_helpers import chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider, RecordedRequest, Reply

from cacheback import AsyncCachedAnthropic, AsyncCachedOpenAI, CachedOpenAI
from cacheback.adapters.embedders._miss_probe import ProbePredictor
from cacheback.core._call import UpstreamCall
from cacheback.core._early import start_early
from cacheback.core._errors import ConfigError
from cacheback.core._job import Job
from cacheback.core._settings import Settings
from cacheback.core._speculation import answer_floor, speculable
from cacheback.core._types import LookupRequest

pytestmark = pytest.mark.anyio

STORED = "How do I reverse a list in Python?"
PARAPHRASE = "How can I reverse a list in Python?"
UNRELATED = "Which wines go well with a mushroom risotto?"


# -- the pure decisions ---------------------------------------------------------------


def test_the_floor_is_the_lowest_similarity_that_could_still_answer() -> None:
    s = Settings(similarity_threshold=0.9, synthesis_threshold=0.75)
    assert answer_floor(s.matching, s.synthesis, can_synthesize=True) == 0.9  # synthesis off
    on = s.with_(synthesis_mode="auto")
    assert answer_floor(on.matching, on.synthesis, can_synthesize=True) == 0.75
    assert answer_floor(on.matching, on.synthesis, can_synthesize=False) == 0.9  # no cheap model


def _call(*, abortable: bool) -> UpstreamCall:
    async def send() -> str:
        return "answer"

    return UpstreamCall(
        send=send, streaming=False, extract=lambda r: (None, {}), reader=lambda: None, abortable=abortable  # type: ignore[arg-type,return-value]
    )


def _job(*, abortable: bool = True, cacheable: bool = True) -> Job:
    request = LookupRequest(query="q", scope="s")
    if not cacheable:
        request.cacheable = False
    return Job(request=request, namespace="n", scope="s", query_hash="h", call=_call(abortable=abortable))


def test_only_an_abortable_cacheable_waiting_call_is_speculable() -> None:
    assert speculable(_job())
    assert not speculable(_job(abortable=False))  # a worker-thread call would run to its end
    assert not speculable(_job(cacheable=False))  # never answered from the cache anyway
    lookup_only = _job()
    lookup_only.call = None
    assert not speculable(lookup_only)
    left = _job()
    left.abandoned = True
    assert not speculable(left)


def test_the_margin_setting_is_checked() -> None:
    assert Settings(speculation_margin=0.1).speculation_margin == 0.1
    with pytest.raises(ConfigError, match="speculation_margin"):
        Settings(speculation_margin=1.5)
    assert Settings.from_env({"CACHEBACK_SPECULATIVE_UPSTREAM": "yes"}).speculative_upstream is True


# -- the early call ---------------------------------------------------------------------


async def test_a_launched_call_sends_at_once_and_is_taken_back_on_a_hit() -> None:
    sent, wasted = asyncio.Event(), []

    async def send() -> str:
        sent.set()
        await asyncio.sleep(10)  # a slow provider: the hit arrives first
        return "never"

    early = start_early(send)
    early.launch(on_wasted=lambda: wasted.append(1))
    await asyncio.wait_for(sent.wait(), 5)  # on the wire before any decision
    early.abandon()  # the lookup found an answer after all
    await asyncio.sleep(0)
    assert wasted == [1]
    assert early._task.cancelled() or early._task.cancelling()


async def test_a_stream_returned_before_the_hit_is_closed() -> None:
    closed = asyncio.Event()

    class Stream:
        async def aclose(self) -> None:
            closed.set()

    class Result:
        response = Stream()
        events = None

    async def send() -> Result:
        return Result()

    early = start_early(send)
    early.launch()
    await asyncio.sleep(0.01)  # the provider answered (headers in) before the lookup ended
    early.abandon()
    await asyncio.wait_for(closed.wait(), 5)


async def test_a_launched_call_taken_by_the_miss_is_not_wasted() -> None:
    wasted: list[int] = []

    async def send() -> str:
        return "answer"

    early = start_early(send)
    early.launch(on_wasted=lambda: wasted.append(1))
    assert await early.send() == "answer"
    early.abandon()  # released after the miss: nothing to take back
    assert wasted == []


# -- the probe predictor (the shipped table, the real tokenizer) -----------------------


def test_the_probe_predictor_learns_scopes_and_calls_only_clear_misses(embedder: Any) -> None:
    predictor = embedder.miss_predictor()
    assert isinstance(predictor, ProbePredictor)
    predictor.learn("s", STORED)
    assert predictor.known() == 0  # queued: probed on the worker's next call
    clear = predictor.clear_misses(["s", "s", "empty"], [UNRELATED, PARAPHRASE, PARAPHRASE], 0.92)
    assert clear == [True, False, True]
    assert predictor.known() == 1


def test_a_scope_too_big_to_probe_is_never_a_clear_miss(embedder: Any) -> None:
    predictor = ProbePredictor(embedder.miss_probe(), max_scope=2)
    for text in (STORED, "What is the capital of France?", "How do tides work?"):
        predictor.learn("s", text)
    assert predictor.clear_misses(["s"], [UNRELATED], 0.92) == [False]


def test_a_huge_question_is_probed_by_its_start(embedder: Any) -> None:
    predictor = embedder.miss_predictor()
    predictor.learn("s", STORED * 50_000)  # megabytes: only the start is kept
    assert predictor.clear_misses(["s"], [UNRELATED * 50_000], 0.92) == [True]


# -- through the real SDKs -------------------------------------------------------------


class Predicting:
    """The real embedder, with a chosen predictor; its embedding waits (up to 5 s) until
    the provider has received a request, so a test can tell whether the call left first."""

    def __init__(self, inner: Any, predictor: Any, wait: bool = True) -> None:
        self._inner, self._predictor = inner, predictor
        self.name, self.dim = inner.name, inner.dim
        self.provider_saw = threading.Event()
        self.wait = wait
        self.released_by_provider: list[bool] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # Only lookups wait: the indexer embeds stored questions (the seed) in the background.
        if self.wait and STORED not in texts:
            self.released_by_provider.append(self.provider_saw.wait(5))
        return self._inner.embed(texts)

    def miss_predictor(self, margin: float | None = None) -> Any:
        return self._predictor

    def describe(self) -> dict[str, Any]:
        return dict(self._inner.describe())


class AlwaysClear:
    """A predictor wrong about every hit: each lookup's call leaves early."""

    def clear_misses(self, scopes: Sequence[str], texts: Sequence[str], threshold: float) -> list[bool]:
        return [True] * len(texts)

    def learn(self, scope: str, text: str) -> None:
        pass


def _watch(fake: FakeProvider, emb: Predicting, reply: Reply | None = None) -> None:
    """Tell ``emb`` when the provider receives a lookup's request (answered with ``reply``)."""

    def responder(req: RecordedRequest) -> Reply | None:
        if req.question == STORED:
            return None
        emb.provider_saw.set()
        return reply

    fake.responder = responder


async def _seed(client: Any, emb: Predicting) -> None:
    emb.wait = False
    await client.chat.completions.create(model="gpt-4o", messages=user(STORED))
    await client.cache.flush()
    emb.wait = True
    emb.provider_saw.clear()


async def test_a_clear_miss_is_on_the_wire_before_its_question_embeds(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    emb = Predicting(embedder, embedder.miss_predictor())
    _watch(fake, emb)
    args = openai_args(fake, cache_dir, emb, speculative_upstream=True)
    async with AsyncCachedOpenAI(**args) as client:
        await _seed(client, emb)
        miss = await client.chat.completions.create(model="gpt-4o", messages=user(UNRELATED))
        assert miss.cacheback.tier == "upstream"  # type: ignore[attr-defined]
        assert emb.released_by_provider == [True]  # the provider had it while it embedded
        assert fake.count("chat") == 2
        await client.cache.flush()
        # A rewording of a stored question is not a clear miss: it waits for its lookup.
        emb.provider_saw.clear()
        emb.released_by_provider.clear()
        hit = await client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
        assert emb.released_by_provider == [False] and fake.count("chat") == 2
        stats = await client.cache.stats()
        assert stats["speculation"] == {"sent": 1, "taken_back": 0}


async def test_a_hit_found_after_all_takes_the_call_back_and_is_served(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    emb = Predicting(embedder, AlwaysClear())
    _watch(fake, emb, Reply(delay=30.0))  # the speculative call would hang
    args = openai_args(fake, cache_dir, emb, speculative_upstream=True)
    async with AsyncCachedOpenAI(**args) as client:
        await _seed(client, emb)
        stored = (await client.chat.completions.create(model="gpt-4o", messages=user(STORED))).choices
        hit = await client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
        assert hit.choices[0].message.content == stored[0].message.content
        assert emb.released_by_provider == [True] and fake.count("chat") == 2  # it had left
        stats = await client.cache.stats()
        assert stats["speculation"] == {"sent": 1, "taken_back": 1}


async def test_a_streamed_speculative_call_is_closed_when_a_hit_wins(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    emb = Predicting(embedder, AlwaysClear())
    _watch(fake, emb, Reply(chunk_delay=5.0))  # a stream that would crawl
    args = anthropic_args(fake, cache_dir, emb, speculative_upstream=True)
    async with AsyncCachedAnthropic(**args) as client:
        emb.wait = False
        await client.messages.create(model="claude-x", max_tokens=64, messages=user(STORED))
        await client.cache.flush()
        emb.wait = True
        emb.provider_saw.clear()
        stream = await client.messages.create(
            model="claude-x", max_tokens=64, messages=user(PARAPHRASE), stream=True
        )
        text = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
        assert text and stream.cacheback_hit is True  # type: ignore[attr-defined]
        assert fake.count("messages") == 2
        assert (await client.cache.stats())["speculation"]["taken_back"] == 1


def test_a_sync_client_never_speculates(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    emb = Predicting(embedder, AlwaysClear(), wait=False)
    with CachedOpenAI(**openai_args(fake, cache_dir, emb, speculative_upstream=True)) as client:
        client.chat.completions.create(model="gpt-4o", messages=user(STORED))
        client.cache.flush()
        hit = client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
        assert fake.count("chat") == 1  # its call runs on a worker thread: never sent early
        assert client.cache.stats["speculation"]["sent"] == 0


async def test_off_by_default(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    emb = Predicting(embedder, AlwaysClear(), wait=False)
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, emb)) as client:
        await client.chat.completions.create(model="gpt-4o", messages=user(STORED))
        await client.cache.flush()
        await client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert fake.count("chat") == 1
        assert (await client.cache.stats())["speculation"]["sent"] == 0


async def test_stored_questions_are_taught_when_the_engine_opens(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        await client.chat.completions.create(model="gpt-4o", messages=user(STORED))
    predictor = embedder.miss_predictor()
    emb = Predicting(embedder, predictor, wait=False)
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, emb, speculative_upstream=True)) as client:
        await client.cache.flush()
        for _ in range(100):  # the stored questions are read in the background
            if predictor._learned or predictor.known():
                break
            await asyncio.sleep(0.02)
        hit = await client.chat.completions.create(model="gpt-4o", messages=user(PARAPHRASE))
        assert hit.cacheback.tier == "verbatim"  # type: ignore[attr-defined]
        assert fake.count("chat") == 1  # known: not a clear miss, nothing sent
        assert (await client.cache.stats())["speculation"]["sent"] == 0


# -- through the proxy -------------------------------------------------------------------


def test_the_proxy_speculates_on_a_clear_miss(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHEBACK_SPECULATIVE_UPSTREAM", "1")
    emb = Predicting(embedder, embedder.miss_predictor(), wait=False)
    _watch(fake, emb)
    with running_proxy(proxy_config(fake, cache_dir), emb) as px:
        auth = {"Authorization": "Bearer sk-a"}
        with httpx.Client(base_url=px.base_url, timeout=10, headers=auth) as http:
            first = http.post("/v1/chat/completions", json=chat_body(STORED))
            assert first.status_code == 200
            time.sleep(0.3)  # write-behind lands (as the other proxy tests settle)
            emb.wait = True
            emb.provider_saw.clear()
            miss = http.post("/v1/chat/completions", json=chat_body(UNRELATED))
            assert miss.status_code == 200 and miss.headers["x-cacheback-tier"] == "upstream"
            assert emb.released_by_provider == [True]


async def test_the_inference_of_a_clear_miss_waits_for_its_request_to_pass_the_gate(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is built and let go before the inference takes the CPU (bounded by
    ``SEND_FIRST_S``, made long here so the order does not depend on the machine)."""
    from cacheback.core import _early
    from cacheback.stages import embed_batcher

    order: list[str] = []
    passage = _early.Gate._passage

    def recorded(gate: _early.Gate) -> None:
        passage(gate)
        order.append("passed")

    monkeypatch.setattr(_early.Gate, "_passage", recorded)
    monkeypatch.setattr(embed_batcher, "SEND_FIRST_S", 30.0)
    emb = Predicting(embedder, AlwaysClear(), wait=False)
    inner = emb.embed

    def embed(texts: Sequence[str]) -> np.ndarray:
        if UNRELATED in texts:  # not the indexer embedding the stored question
            order.append("embed")
        return inner(texts)

    emb.embed = embed  # type: ignore[method-assign]
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, emb, speculative_upstream=True)) as client:
        emb.wait = False
        await client.chat.completions.create(model="gpt-4o", messages=user(STORED))
        await client.cache.flush()
        order.clear()
        miss = await client.chat.completions.create(model="gpt-4o", messages=user(UNRELATED))
        assert miss.cacheback.tier == "upstream"  # type: ignore[attr-defined]
        assert order[:2] == ["passed", "embed"]
        assert (await client.cache.stats())["speculation"] == {"sent": 1, "taken_back": 0}
