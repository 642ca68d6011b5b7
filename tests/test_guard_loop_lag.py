"""Big prompts never hold the event loop: the guard analyses a bounded amount of text and
vetoes what it could not check, the router judges large texts on a worker thread, and
10 MB prompts go through the engine (real ONNX embedder, real SQLite) while a loop-lag
monitor ticks."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _loop_lag import LoopLag, idle_lag, loop_lag_monitor

from cacheback import AsyncSemanticCache
from cacheback.core._types import CacheEntry, Candidate
from cacheback.guard import MAX_ANALYSED_CHARS, guard_reasons, pair_features, verbatim_decision, word_overlap
from cacheback.stages import tier_router

MB = 1_000_000


def prompt(topic: str, size: int) -> str:
    """A long prompt of ordinary sentences about ``topic``, ``size`` characters or a little more."""
    sentence = (
        f"Here is a long report about {topic}: the river rose by 3 metres in April, "
        "the town council met on Tuesday, and the bridge was closed to traffic. "
    )
    return sentence * (size // len(sentence) + 1)


@pytest.fixture
async def loop_lag() -> AsyncIterator[LoopLag]:
    """Records the event loop's lag for the whole test; fails it when held > 100 ms beyond
    what an idle loop shows on this machine."""
    noise = await idle_lag()
    async with loop_lag_monitor() as lag:
        lag.noise_s = noise
        yield lag
    lag.check(noise_s=noise)


def test_a_pair_the_guard_cannot_read_whole_is_vetoed_unless_identical() -> None:
    base = prompt("the harbour", 3 * MAX_ANALYSED_CHARS)
    changed_end = base + " Now summarise it in French."
    assert guard_reasons(changed_end, base) == ("too_long:both",)
    assert guard_reasons("Summarise the report", base) == ("too_long:candidate",)
    assert guard_reasons(base, "Summarise the report") == ("too_long:query",)
    assert not verbatim_decision(changed_end, base, 0.999).hit
    assert guard_reasons(base, base) == ()
    assert verbatim_decision(base, base, 0.999).hit
    # Up to the cap, a text is analysed as before.
    short = prompt("the harbour", 0)[:MAX_ANALYSED_CHARS]
    assert len(short) <= MAX_ANALYSED_CHARS and guard_reasons(short, short + " ") == ()


def test_guard_cost_does_not_grow_with_the_text() -> None:
    a, b = prompt("the harbour", 10 * MB), prompt("the airport", 10 * MB)
    t0 = time.perf_counter()
    assert guard_reasons(a, b) == ("too_long:both",)
    assert verbatim_decision(a, b, 0.99).reasons == ("too_long:both",)
    assert 0.0 < word_overlap(a, b) < 1.0
    assert len(pair_features(a, b, 0.99)) == 2
    # The bounded analysis of two texts (cached per text), not ten megabytes of it.
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.anyio
async def test_router_judges_short_texts_inline_and_large_ones_off_the_loop() -> None:
    from cacheback.core._job import Job
    from cacheback.core._settings import Settings
    from cacheback.core._types import LookupRequest

    threads: list[int] = []

    def rule(q: str, c: str, s: float, t: float) -> tuple[bool, tuple[str, ...]]:
        threads.append(threading.get_ident())
        return s >= t, ()

    settings = Settings()
    router = tier_router.TierRouter(
        lambda: settings.matching, lambda: settings.synthesis, lambda: rule, can_synthesize=False
    )

    def job(query: str, candidate: str) -> Job:
        j = Job(request=LookupRequest(query=query), namespace="n", scope="s", query_hash="h", generation=0)
        j.candidates = [Candidate(CacheEntry(1, "s", candidate, "answer", None, 0.0, 1e12, 0.0), 0.99)]
        return j

    short = job("What is the capital of France?", "What's the capital of France?")
    await router.process([short])
    assert threads == [threading.get_ident()]
    assert short.outcome is not None and short.outcome.tier == "verbatim"
    threads.clear()
    long_text = "x " * tier_router.INLINE_CHARS
    large = job(long_text, "What's the capital of France?")
    await router.process([large])
    assert threads and threads[0] != threading.get_ident()
    assert large.outcome is not None and large.outcome.tier == "verbatim"


@pytest.mark.slow
@pytest.mark.anyio
async def test_concurrent_10mb_prompts_never_hold_the_loop(
    cache_dir: Path, embedder: Any, loop_lag: LoopLag
) -> None:
    stored = [prompt(topic, 10 * MB) for topic in ("the harbour", "the airport", "the museum")]
    # The same long prompts with another question at their end: the embedder reads only
    # their start, so only the guard can tell them apart. Built here, before the lag is
    # measured: three 10 MB concatenations in one step of this test would hold the loop.
    changed = [text + " Now translate the report into German." for text in stored]
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate("What is the capital of France?", "Paris")  # opens the index
        loop_lag.lags.clear()
        async with anyio.create_task_group() as tg:
            for k, text in enumerate(stored):
                tg.start_soon(cache.populate, text, f"answer {k}")
        populate_lag = loop_lag.max_s

        results: dict[str, Any] = {}

        async def ask(name: str, text: str) -> None:
            results[name] = await cache.lookup_detailed(text)

        async with anyio.create_task_group() as tg:
            for k, text in enumerate(changed):
                tg.start_soon(ask, f"changed{k}", text)
            tg.start_soon(ask, "same", stored[0])
            tg.start_soon(ask, "short", "What's the capital city of France?")
    assert populate_lag <= 0.1 + loop_lag.noise_s, f"populate held the loop {populate_lag * 1000:.0f} ms"
    for k in range(3):
        r = results[f"changed{k}"]
        assert r.tier == "miss" and r.answer is None, (k, r.tier)
    assert results["same"].tier == "exact" and results["same"].answer == "answer 0"
    assert results["short"].tier == "verbatim" and results["short"].answer == "Paris"
