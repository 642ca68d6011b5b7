"""The engine's one upstream call per request: streams read on their way and stored only
when whole, identical misses sharing one call, and calls nobody waits for cancelled.
Real ONNX inference and real SQLite files; the provider is a plain async function."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from cacheback import AsyncSemanticCache
from cacheback.core._call import Answer, Streamed, Text, UpstreamCall, Usage
from cacheback.core._errors import UpstreamCancelled
from cacheback.core._types import LookupRequest

pytestmark = pytest.mark.anyio

PIECES = ["Rust is ", "a systems ", "programming language."]
USAGE = {"input_tokens": 12, "output_tokens": 7, "model": "test-model"}


class Joiner:
    """Reads text events: the answer is their concatenation."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, event: Any) -> None:
        self.parts.append(event)

    def result(self) -> tuple[Answer | None, Usage]:
        return Text("".join(self.parts)), dict(USAGE)


def streamed_call(sent: list[int]) -> UpstreamCall:
    async def events() -> AsyncIterator[str]:
        for piece in PIECES:
            await anyio.lowlevel.checkpoint()
            yield piece

    async def send() -> Streamed:
        sent.append(1)
        return Streamed("the adapter's stream object", events())

    def whole(_: Any) -> tuple[Answer | None, Usage]:
        raise AssertionError("a stream is read by its reader")

    return UpstreamCall(send=send, streaming=True, extract=whole, reader=Joiner)


def slow_call(sent: list[int], cancelled: list[int], delay: float) -> UpstreamCall:
    async def send() -> str:
        sent.append(1)
        try:
            await anyio.sleep(delay)
        except BaseException:
            cancelled.append(1)
            raise
        return "Paris is the capital of France."

    def no_stream() -> Any:
        raise AssertionError("no stream here")

    return UpstreamCall(
        send=send, streaming=False, extract=lambda t: (Text(t), dict(USAGE)), reader=no_stream
    )


async def test_a_stream_is_stored_once_whole_and_never_when_closed_early(
    cache_dir: Path, embedder: Any
) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        engine, sent = cache.engine, []
        job = await engine.run(LookupRequest(query="What is Rust?", scope="s"), streamed_call(sent))
        assert job.outcome is not None and job.outcome.tier.value == "upstream"
        response = job.response
        assert isinstance(response, Streamed) and response.response == "the adapter's stream object"
        await cache.flush()
        assert (await cache.lookup_detailed("What is Rust?", scope="s")).tier == "miss"  # not read yet
        assert [piece async for piece in response.events] == PIECES  # the caller reads it all
        await cache.flush()
        stored = await cache.lookup_detailed("What is Rust?", scope="s")
        assert stored.tier == "exact" and stored.answer == "".join(PIECES)
        entries = await engine.admin.entries()
        assert entries[0].metadata["usage"] == USAGE  # the reader's usage, kept with the entry

        early = await engine.run(LookupRequest(query="What is Go?", scope="s"), streamed_call(sent))
        events = early.response.events
        assert await events.__anext__() == PIECES[0]
        await events.aclose()  # the caller stopped reading: a partial answer is never stored
        await cache.flush()
        assert (await cache.lookup_detailed("What is Go?", scope="s")).tier == "miss"
        assert len(sent) == 2


async def test_identical_misses_share_one_call(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        engine, sent, cancelled = cache.engine, [], []
        jobs: list[Any] = []

        async def ask() -> None:
            call = slow_call(sent, cancelled, 0.3)
            jobs.append(await engine.run(LookupRequest(query="What is the capital of France?"), call))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ask)
        assert len(sent) == 1 and not cancelled
        assert sorted(bool(j.trace.get("coalesced")) for j in jobs) == [False, True, True]
        assert {j.answer.text for j in jobs} == {"Paris is the capital of France."}
        assert (await engine.admin.stats())["coalesced"] == 2


async def test_a_call_nobody_waits_for_is_cancelled_and_closing_cancels_the_rest(
    cache_dir: Path, embedder: Any
) -> None:
    cache = AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder)
    await cache.open()
    engine, sent, cancelled = cache.engine, [], []
    with anyio.move_on_after(0.3):  # the caller leaves while the provider is still thinking
        await engine.run(LookupRequest(query="A question nobody waits for"), slow_call(sent, cancelled, 5))
    await anyio.sleep(0.05)
    assert sent == [1] and cancelled == [1]

    async def hung() -> Any:
        return await engine.run(
            LookupRequest(query="A question the provider never answers"), slow_call(sent, cancelled, 60)
        )

    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            result.append(await hung())

        tg.start_soon(wait)
        await anyio.sleep(0.3)
        with anyio.fail_after(5):
            await engine.aclose(grace_s=0.2)  # a grace, then the hung call is cancelled
    assert isinstance(result[0].error, UpstreamCancelled) and cancelled == [1, 1]
    await cache.close()


async def test_a_plain_answer_reaches_its_caller_before_it_is_stored(cache_dir: Path, embedder: Any) -> None:
    """Reading a miss's answer for the cache, storing it and counting its usage wait until
    the caller has its response; a flush, the stats and the next identical request all see
    it (read-your-writes), and an identical request meanwhile follows the same call."""
    read: list[str] = []

    async def send() -> str:
        return "Paris is the capital of France."

    def extract(text: Any) -> tuple[Answer | None, Usage]:
        read.append(text)
        return Text(text), dict(USAGE)

    def no_stream() -> Any:
        raise AssertionError("no stream here")

    def call() -> UpstreamCall:
        return UpstreamCall(send=send, streaming=False, extract=extract, reader=no_stream)

    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        engine = cache.engine
        request = LookupRequest(query="What is the capital of France?", scope="s")
        job = await engine.run(request, call())
        assert job.outcome is not None and job.outcome.tier.value == "upstream"
        assert job.response == "Paris is the capital of France."
        assert read == [] and job.answer is None  # the caller first: nothing read for the cache yet
        again = await engine.run(LookupRequest(query="What is the capital of France?", scope="s"), call())
        assert again.outcome is not None and again.outcome.tier.value == "exact"
        assert read == ["Paris is the capital of France."]  # read once, before the repeat looked
        await engine.admin.stats()  # counted by now
        assert engine.stats.total("cost.upstream.input_tokens") == 12
        await cache.flush()
        assert await engine.store.maintenance.count() == 1
