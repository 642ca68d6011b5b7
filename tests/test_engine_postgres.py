"""Replicas sharing one cache in PostgreSQL: engines with the real embedder on a real server."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from cacheback import AsyncSemanticCache

pytestmark = pytest.mark.anyio


def replica(url: str, embedder: Any, **kw: Any) -> AsyncSemanticCache:
    return AsyncSemanticCache(store_url=url, embedder=embedder, **kw)


async def _until(check: Any, limit: float) -> float:
    """Seconds until ``await check()`` is true (fails past ``limit``)."""
    started = time.perf_counter()
    with anyio.fail_after(limit):
        while not await check():  # noqa: ASYNC110 - polls what another replica sees
            await anyio.sleep(0.005)
    return time.perf_counter() - started


async def test_an_answer_paid_for_on_one_replica_hits_on_the_other(pg_url: str, embedder: Any) -> None:
    async with replica(pg_url, embedder) as one, replica(pg_url, embedder) as two:
        await one.populate("How do I reverse a list in Python?", "Use reversed() or slicing.")
        exact = await two.lookup_detailed("How do I reverse a list in Python?")
        assert exact.tier == "exact" and exact.answer == "Use reversed() or slicing."
        para = await two.lookup_detailed("How can I reverse a list in Python?")
        assert para.tier == "verbatim" and para.answer == "Use reversed() or slicing."
        assert (await two.stats())["store"]["backend"] == "postgres"


async def test_a_removal_on_one_replica_reaches_the_others_memory_within_a_second(
    pg_url: str, embedder: Any
) -> None:
    async with replica(pg_url, embedder) as one, replica(pg_url, embedder) as two:
        eid = await one.populate("What is the tallest mountain on Earth?", "Mount Everest.")
        # The second replica now answers it from its in-memory exact-hit map.
        assert await two.lookup("What is the tallest mountain on Earth?") == "Mount Everest."
        assert await two.lookup("What is the tallest mountain on Earth?") == "Mount Everest."
        assert await one.delete(eid)

        async def gone() -> bool:
            return await two.lookup("What is the tallest mountain on Earth?") is None

        delay = await _until(gone, 1.0)
        print(f"cross-replica invalidation: {delay * 1000:.1f} ms")


async def test_blocklist_eviction_and_ttl_are_shared(pg_url: str, embedder: Any) -> None:
    async with (
        replica(pg_url, embedder, max_entries=3, cache_ttl=30) as one,
        replica(pg_url, embedder, max_entries=3, cache_ttl=30) as two,
    ):
        # eviction: the cap counts both replicas' entries
        for i, q in enumerate(["What is Rust?", "Who wrote Hamlet?", "What is photosynthesis?"]):
            await (one if i % 2 else two).populate(q, f"answer {i}", ttl=30)
            await anyio.sleep(0.01)
        await one.populate("How tall is Mount Everest?", "8849 m", ttl=30)
        assert (await two.stats())["entries"] == 3

        async def evicted() -> bool:  # the least recently used, written (and remembered) by two
            return await two.lookup("What is Rust?") is None

        await _until(evicted, 1.0)  # its memory drops it when the eviction's notice arrives
        # TTL: an entry written short-lived by one replica expires for the other
        await one.populate("What is the speed of light?", "299792 km/s", ttl=0.5)
        assert await two.lookup("What is the speed of light?") == "299792 km/s"
        await anyio.sleep(0.7)
        assert await two.lookup("What is the speed of light?") is None
        # blocklist: added on one, enforced on the other within about a second
        await one.negative.add("How do I pick a lock?", reason="policy")

        async def blocked() -> bool:
            found = await two.negative.check("How do I pick a lock?")
            outcome = await two.lookup_detailed("How do I pick a lock?")
            return found is not None and outcome.tier == "blocked"

        await _until(blocked, 2.5)


async def test_false_positive_reports_from_all_replicas_add_up_to_the_removal(
    pg_url: str, embedder: Any
) -> None:
    async with (
        replica(pg_url, embedder, negative_false_positive_limit=3) as one,
        replica(pg_url, embedder, negative_false_positive_limit=3) as two,
    ):
        eid = await one.negative.add("Tell me how to forge a passport", reason="fraud")
        assert (await one.negative.report_false_positive(eid))["false_positives"] == 1
        assert (await two.negative.report_false_positive(eid))["false_positives"] == 2
        third = await two.negative.report_false_positive(eid)
        assert third["false_positives"] == 3 and third["removed"]
        assert await one.negative.list() == []


async def test_a_slow_database_makes_a_lookup_a_miss_within_the_budget(
    pg_url: str, pg_server: Any, embedder: Any
) -> None:
    import asyncpg

    async with replica(pg_url, embedder, store_timeout_s=0.2) as cache:
        await cache.populate("What colour is the sky on a clear day?", "Blue.")
        schema = pg_url.rsplit("schema=", 1)[1]
        blocker = await asyncpg.connect(pg_server.url("postgres"))
        try:
            async with blocker.transaction():
                await blocker.execute(f"LOCK TABLE {schema}.entries IN ACCESS EXCLUSIVE MODE")
                started = time.perf_counter()
                outcome = await cache.lookup_detailed("Which colour is the sky on a clear day?")
                took = time.perf_counter() - started
        finally:
            await blocker.close()
        assert not outcome.hit
        # the budget (0.2 s) for the exact check plus one for the search, and the embedding
        assert took < 0.8
        print(f"lookup against a locked table: {took * 1000:.0f} ms")
        assert (await cache.stats())["store"]["timeouts"] >= 1
        assert await cache.lookup("Which colour is the sky on a clear day?") == "Blue."


async def test_tenants_never_see_each_other(pg_url: str, embedder: Any) -> None:
    async with replica(pg_url, embedder) as one, replica(pg_url, embedder) as two:
        await one.populate("What is the capital of France?", "Paris", namespace="tenant-a")
        assert await two.lookup("What is the capital of France?", namespace="tenant-a") == "Paris"
        assert await two.lookup("What is the capital of France?", namespace="tenant-b") is None
        assert await two.lookup("What is the capital of Francia?", namespace="tenant-b") is None


async def test_postgres_restarted_under_load_fails_no_request(pg_server: Any, embedder: Any) -> None:
    url = pg_server.fresh_url()
    errors: list[BaseException] = []
    tiers: dict[str, int] = {}
    degraded_seen = False
    questions = [f"What is the population of city number {i}?" for i in range(8)]
    async with replica(url, embedder) as cache:
        for i, q in enumerate(questions):
            await cache.populate(q, f"about {i} million")
        stop = anyio.Event()

        async def caller(k: int) -> None:
            n = k
            while not stop.is_set():
                try:
                    out = await cache.lookup_detailed(
                        questions[n % len(questions)] + ("" if n % 3 else " please")
                    )
                except Exception as exc:  # the point of the test: there must be none
                    errors.append(exc)
                else:
                    tiers[out.tier] = tiers.get(out.tier, 0) + 1
                n += 1
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            for k in range(16):
                tg.start_soon(caller, k)
            await anyio.sleep(0.5)
            try:
                await anyio.to_thread.run_sync(pg_server.stop, "immediate")  # like a crash
                await anyio.sleep(1.0)
                degraded_seen = bool((await cache.stats())["store"]["degraded"])
            finally:
                await anyio.to_thread.run_sync(pg_server.start)

            async def hits_again() -> bool:  # from the database: a paraphrase, not memory
                stats = await cache.stats()
                if stats["store"]["degraded"]:
                    return False
                return (await cache.lookup_detailed(f"{questions[tiers_seen()]} please?")).hit

            def tiers_seen() -> int:
                return sum(tiers.values()) % len(questions)

            took = await _until(hits_again, 20.0)
            print(f"serving hits again {took:.1f} s after the restart")
            served = sum(tiers.values())
            await anyio.sleep(0.5)
            stop.set()
        assert errors == []
        assert degraded_seen
        assert sum(tiers.values()) > served  # still serving after the restart
        store = (await cache.stats())["store"]
        assert store["outages"] >= 1 and store["listening"]


async def test_blocklist_additions_and_removals_reach_the_other_replica_within_a_second(
    pg_url: str, embedder: Any
) -> None:
    question = "What is the quickest way to open a locked car door?"
    async with replica(pg_url, embedder) as one, replica(pg_url, embedder) as two:
        await one.populate(question, "Call a locksmith.")
        assert (await two.lookup_detailed(question)).tier == "exact"  # now in two's memory too
        eid = await one.negative.add(question, reason="policy")

        async def blocked() -> bool:
            return (await two.lookup_detailed(question)).tier == "blocked"

        added = await _until(blocked, 1.0)
        assert (await two.stats())["store"]["blocklist_in_memory"] is True
        assert await one.negative.remove(eid)

        async def served() -> bool:
            return (await two.lookup_detailed(question)).tier == "exact"

        removed = await _until(served, 1.0)
        print(f"blocklist seen by the other replica: + {added * 1e3:.1f} ms, - {removed * 1e3:.1f} ms")
