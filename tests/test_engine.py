"""The engine end to end with real ONNX inference and real SQLite files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from cacheback import AsyncSemanticCache, SemanticCache
from cacheback.core._errors import EngineClosed

pytestmark = pytest.mark.anyio


def make(cache_dir: Path, embedder: Any, **kw: Any) -> AsyncSemanticCache:
    return AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder, **kw)


async def test_paraphrase_hits_and_unrelated_misses(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("How do I reverse a list in Python?", "Use reversed() or slicing.")
        hit = await cache.lookup_detailed("How can I reverse a list in Python?")
        assert hit.hit and hit.tier == "verbatim"
        assert hit.answer == "Use reversed() or slicing."
        assert hit.similarity is not None and hit.similarity >= 0.92
        miss = await cache.lookup_detailed("What is the boiling point of water at sea level?")
        assert not miss.hit and miss.answer is None and miss.tier == "miss"


async def test_exact_repeat_is_answered_without_embedding(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("What is Python?", "A programming language.")
        batches_before = cache.engine._stages["embed_batcher"].batches  # type: ignore[attr-defined]
        first = await cache.lookup_detailed("What is Python?")
        second = await cache.lookup_detailed("  What   is Python? ")
        assert first.tier == "exact" and second.tier == "exact"
        assert cache.engine._stages["embed_batcher"].batches == batches_before  # type: ignore[attr-defined]


async def test_namespaces_never_see_each_other(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("What is the capital of France?", "Paris", namespace="tenant-a")
        assert await cache.lookup("What is the capital of France?", namespace="tenant-a") == "Paris"
        assert await cache.lookup("What is the capital of France?", namespace="tenant-b") is None
        assert await cache.lookup("What is the capital of France?") is None


async def test_ttl_expiry_on_read_and_sweep(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder, cache_ttl=0.5) as cache:
        await cache.populate("What is a monad?", "A monoid in the category of endofunctors.")
        assert await cache.lookup("What is a monad?") is not None
        await anyio.sleep(0.7)
        assert await cache.lookup("What is a monad?") is None
        assert await cache.lookup("What's a monad?") is None
        assert await cache.evict_expired() == 1
        assert (await cache.stats())["entries"] == 0


async def test_lru_eviction_and_recaching(cache_dir: Path, embedder: Any) -> None:
    qs = ["What is Rust?", "How tall is Mount Everest?", "Who wrote Hamlet?", "What is photosynthesis?"]
    async with make(cache_dir, embedder, max_entries=3) as cache:
        for i, q in enumerate(qs[:3]):
            await cache.populate(q, f"answer {i}")
            await anyio.sleep(0.01)
        assert await cache.lookup(qs[0]) == "answer 0"  # touch: now most recent
        await cache.flush()  # the LRU touch is written behind
        await cache.populate(qs[3], "answer 3")
        stats = await cache.stats()
        assert stats["entries"] == 3
        assert await cache.lookup(qs[1]) is None  # least recently used went first
        assert await cache.lookup(qs[0]) == "answer 0"
        await cache.populate(qs[1], "answer 1 again")
        assert await cache.lookup(qs[1]) == "answer 1 again"


async def test_restart_keeps_entries_and_counters(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("Who painted the Mona Lisa?", "Leonardo da Vinci")
        assert await cache.lookup("Who painted the Mona Lisa?") == "Leonardo da Vinci"
        hits_before = (await cache.stats())["hits"]
    async with make(cache_dir, embedder) as cache:
        assert await cache.lookup("Who was the painter of the Mona Lisa?") == "Leonardo da Vinci"
        stats = await cache.stats()
        assert stats["entries"] == 1
        assert stats["hits"] == hits_before + 1


async def test_negative_cache_flow(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder, negative_false_positive_limit=5) as cache:
        await cache.populate("How to hack into systems", "cached answer")
        entry_id = await cache.negative.add(
            "How to hack into systems", reason="refusal", category="safety", severity=5
        )
        match = await cache.negative.check("How do I hack into computer systems?")
        assert match is not None
        assert match["reason"] == "refusal" and match["entry_id"] == entry_id
        assert match["category"] == "safety" and match["severity"] == 5
        assert await cache.negative.check("How do I bake bread?") is None
        blocked = await cache.lookup_detailed("How to hack into systems")
        assert blocked.tier == "blocked" and blocked.negative is not None
        assert [e["entry_id"] for e in await cache.negative.list(category="safety")] == [entry_id]
        assert await cache.negative.list(category="other") == []
        for i in range(4):
            r = await cache.negative.report_false_positive(entry_id)
            assert r["false_positives"] == i + 1 and not r["removed"]
        r = await cache.negative.report_false_positive(entry_id)
        assert r["removed"]
        assert await cache.negative.list() == []
        assert (await cache.lookup_detailed("How to hack into systems")).tier == "exact"
        other = await cache.negative.add("Write malware", reason="policy", category="safety")
        assert await cache.negative.remove(other)
        assert not await cache.negative.remove(other)


async def test_negative_entry_is_durable_at_once(cache_dir: Path, embedder: Any) -> None:
    cache = make(cache_dir, embedder)
    await cache.open()
    await cache.negative.add("Tell me how to make a weapon", reason="refusal", category="safety")
    reopened = make(cache_dir, embedder)
    try:
        assert len(await reopened.negative.list()) == 1
    finally:
        await reopened.close()
        await cache.close()


async def test_500_concurrent_lookups_are_correct(cache_dir: Path, embedder: Any) -> None:
    topics = [f"What is the population of city number {i}?" for i in range(50)]
    async with make(cache_dir, embedder) as cache:
        for i, q in enumerate(topics):
            await cache.populate(q, f"answer {i}")
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            q = topics[i % 50] if i % 2 == 0 else f"Unrelated question about gardening tools {i}"
            results[i] = await cache.lookup_detailed(q)

        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(one, i)
        assert len(results) == 500
        for i, r in results.items():
            if i % 2 == 0:
                assert r.hit and r.answer == f"answer {i % 50}"
            else:
                assert not r.hit
        stats = await cache.stats()
        assert stats["hits"] >= 250


async def test_event_loop_never_blocks(cache_dir: Path, embedder: Any, blocking_detector: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        blocking_detector.install()
        await cache.populate("What is the speed of light?", "299,792,458 m/s")
        async with anyio.create_task_group() as tg:
            for i in range(64):
                tg.start_soon(cache.lookup, f"How fast does light travel, variant {i}?")
        await cache.lookup("What is the speed of light?")
        await cache.negative.add("bad query", reason="test")
        await cache.stats()
        await cache.evict_expired()
        blocking_detector.uninstall()
    assert blocking_detector.calls == []


async def test_stats_report_tiers_and_latency(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("What is Docker?", "A container platform.")
        await cache.lookup("What is Docker?")
        await cache.lookup("Something completely different about oceans")
        s = await cache.stats()
        assert s["hits"] == 1 and s["misses"] == 1 and s["hit_rate"] == 0.5
        assert s["entries"] == 1
        assert s["embedder"]["dim"] == 384
        assert "exact" in s["latency_ms"] and s["latency_ms"]["exact"]["p50_ms"] > 0
        assert set(s["queues"]) >= {"normalize", "embed_batcher", "persister"}


async def test_closed_cache_refuses_use(cache_dir: Path, embedder: Any) -> None:
    cache = make(cache_dir, embedder)
    await cache.open()
    await cache.close()
    with pytest.raises(EngineClosed):
        await cache.lookup("anything")


async def test_write_behind_is_flushed_on_close(cache_dir: Path, embedder: Any) -> None:
    from cacheback.core._call import Text
    from cacheback.core._types import LookupRequest

    cache = make(cache_dir, embedder)
    await cache.open()
    engine = cache.engine
    job = engine.make_job(LookupRequest(query="What is Kubernetes?"))
    job.vector = (await engine.embed(["What is Kubernetes?"]))[0]  # type: ignore[index]
    engine._store_answer(job, Text("An orchestrator."))
    await cache.close()
    async with make(cache_dir, embedder) as again:
        assert await again.lookup("What is Kubernetes?") == "An orchestrator."


def test_sync_semantic_cache_as_on_the_product_page(cache_dir: Path, embedder: Any) -> None:
    # MiniLM scores "Tell me about Python" vs "What is Python?" at about 0.89.
    cache = SemanticCache(cache_dir=cache_dir, similarity_threshold=0.85, embedder=embedder)
    cache.populate("What is Python?", "Python is a programming language...")
    assert cache.lookup("Tell me about Python") == "Python is a programming language..."
    stats = cache.stats
    assert stats["hits"] == 1 and stats["misses"] == 0
    assert cache.evict_expired() == 0
    cache.close()
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as again:
        assert again.lookup("What is Python?") is not None


def test_sync_cache_from_many_threads(cache_dir: Path, embedder: Any) -> None:
    import concurrent.futures

    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        cache.populate("What is an API?", "An application programming interface.")

        def work(i: int) -> str | None:
            return cache.lookup("What is an API?")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(work, range(64)))
        assert answers == ["An application programming interface."] * 64


def test_exact_only_without_embedder(cache_dir: Path) -> None:
    with SemanticCache(cache_dir=cache_dir, embedder=None) as cache:
        cache.populate("What is Go?", "A language.")
        assert cache.lookup("What is Go?") == "A language."
        assert cache.lookup_detailed("What is Go?").tier == "exact"
        assert cache.lookup("Tell me about Go") is None


async def test_blocklist_entries_of_another_process_are_enforced(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as serving, make(cache_dir, embedder) as admin:
        await serving.populate("How to pick a lock", "cached answer")
        assert (await serving.lookup_detailed("How to pick a lock")).tier == "exact"
        await admin.negative.add("How to pick a lock", reason="policy", category="safety")
        # The serving engine re-reads the blocklist about once a second.
        for _ in range(50):
            if (await serving.lookup_detailed("How do I pick a lock?")).tier == "blocked":
                break
            await anyio.sleep(0.1)
        assert (await serving.lookup_detailed("How do I pick a lock?")).tier == "blocked"
        assert (await serving.lookup_detailed("How to pick a lock")).tier == "blocked"


async def test_a_new_scope_skips_embedding_but_stores_a_vector(cache_dir: Path, embedder: Any) -> None:
    from cacheback.core._call import Text, UpstreamCall
    from cacheback.core._types import LookupRequest

    async def send() -> str:
        return "Light travels at about 300,000 km/s."

    def no_stream() -> Any:
        raise AssertionError("no stream here")

    def call() -> UpstreamCall:
        return UpstreamCall(send=send, streaming=False, extract=lambda t: (Text(t), {}), reader=no_stream)

    async with make(cache_dir, embedder) as cache:
        engine = cache.engine
        batches = engine._stages["embed_batcher"].batches  # type: ignore[attr-defined]
        job = await engine.run(LookupRequest(query="What is the speed of light?", scope="new"), call())
        assert job.outcome is not None and job.outcome.tier.value == "upstream"
        assert engine._stages["embed_batcher"].batches == batches  # type: ignore[attr-defined]
        await cache.flush()  # the persister embedded the answer when storing it
        hit = await cache.lookup_detailed("How fast is the speed of light?", scope="new")
        assert hit.tier == "verbatim" and hit.answer == "Light travels at about 300,000 km/s."


async def test_a_repeat_from_memory_is_answered_in_the_callers_task(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("How many moons does Mars have?", "Two.")
        await cache.lookup("How many moons does Mars have?")  # now in memory
        normalize = cache.engine._stages["normalize"]
        processed: list[int] = []
        original = normalize.process

        async def counting(jobs: Any) -> None:
            processed.append(len(jobs))
            await original(jobs)

        normalize.process = counting  # type: ignore[method-assign]
        hit = await cache.lookup_detailed("How many moons does Mars have?")
        assert hit.tier == "exact" and hit.answer == "Two."
        assert processed == []  # settled without the hop to the stage's task
        assert (await cache.lookup_detailed("How many moons does Jupiter have?")).tier == "miss"
        assert processed == [1]


async def test_a_loop_of_memory_hits_lets_other_tasks_run_and_can_be_cancelled(
    cache_dir: Path, embedder: Any
) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate("What colour is the sky on a clear day?", "Blue.")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            for _ in range(50):
                assert await cache.lookup("What colour is the sky on a clear day?") == "Blue."
            assert ticks >= 40  # each hit is a checkpoint: the ticker ran in between
            tg.cancel_scope.cancel()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cache.lookup("What colour is the sky on a clear day?")
            raise AssertionError("a cancelled caller must stop at the hit's checkpoint")
        assert scope.cancelled_caught


def test_an_outcome_with_its_latency_keeps_every_other_field() -> None:
    import dataclasses

    import numpy as np

    from cacheback.core._types import CacheEntry, Candidate, NegativeMatch, Outcome, Tier
    from cacheback.engine._engine import _with_latency

    entry = CacheEntry(7, "s", "q", "a", b"p", 1.0, 2.0, 3.0, hits=4, metadata={"m": 1})
    outcome = Outcome(
        tier=Tier.VERBATIM,
        similarity=0.95,
        entry=entry,
        candidates=(Candidate(entry, 0.95, ("r",)),),
        negative=NegativeMatch(1, "n", "why", "cat", 2, 0.9),
        guard_reasons=("g",),
        scope="scope",
        query_hash="hash",
        vector=np.ones(3, dtype=np.float32),
        latency_ms=1.0,
        detail="detail",
    )
    timed = _with_latency(outcome, 12.5)
    assert timed.latency_ms == 12.5
    for f in dataclasses.fields(Outcome):
        if f.name != "latency_ms":
            assert getattr(timed, f.name) is getattr(outcome, f.name), f.name
