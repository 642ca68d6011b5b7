"""The storage contract: what every ``Store`` backend must do, whatever it is built on.

Each ``check_*`` function takes a ``StoreFactory`` and runs against a fresh storage space.
``tests/test_store_contract.py`` runs every check over every backend; a new backend only adds
its factory there. The checks use only the ports (``cacheback.core._store_ports``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import numpy as np
import pytest

from cacheback.core._store_ports import (
    Blocklist,
    ChangeFeed,
    Counters,
    Entries,
    ExactQuery,
    Maintenance,
    SearchQuery,
    Store,
)
from cacheback.core._types import CacheEntry, NewEntry, Vector, text_hash

DIM = 16
NOW = 1_700_000_000.0


class StoreFactory(Protocol):
    """Opens the backend over this test's storage space (the same space every call, so a
    second call after the first closed is a restart); closes it on exit."""

    def __call__(self, *, max_entries: int = 1000) -> AbstractAsyncContextManager[Store]: ...


Check = Callable[[StoreFactory], Awaitable[None]]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def unit(seed: int, n: int) -> Vector:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def near(v: Vector, seed: int, eps: float = 0.05) -> Vector:
    w = v + eps * np.random.default_rng(seed).standard_normal(v.shape).astype(np.float32)
    out: Vector = (w / np.linalg.norm(w)).astype(np.float32)
    return out


def new(
    scope: str, query: str, vector: Vector | None, *, now: float = NOW, ttl: float = 3600.0, **meta: Any
) -> NewEntry:
    return NewEntry(
        scope=scope,
        query=query,
        query_hash=text_hash(query),
        answer=f"answer to {query}",
        vector=vector,
        created_at=now,
        expires_at=now + ttl,
        metadata=dict(meta),
    )


async def find_exact(entries: Entries, scope: str, query_hash: str, now: float) -> CacheEntry | None:
    """One exact check through the port's micro-batch member."""
    [found] = await entries.find_exact_many([ExactQuery(scope, query_hash, now)])
    return found


async def ids_found(entries: Entries, scope: str, vector: Vector, k: int, now: float = NOW) -> list[int]:
    return [e.id for e, _ in await entries.search(scope, vector, k, now)]


# -- shape -------------------------------------------------------------------------------------


@check
async def check_parts_conform_to_the_ports(make: StoreFactory) -> None:
    async with make() as store:
        assert isinstance(store, Store)
        assert isinstance(store.entries, Entries)
        assert isinstance(store.maintenance, Maintenance)
        assert isinstance(store.changes, ChangeFeed)
        assert isinstance(store.blocklist, Blocklist)
        assert isinstance(store.counters, Counters)


@check
async def check_describe_names_the_backend_and_its_health(make: StoreFactory) -> None:
    async with make() as store:
        info = store.describe()
        assert isinstance(info["backend"], str) and info["backend"]
        assert info["health"]["degraded"] is False and info["health"]["reason"] is None


# -- entries -----------------------------------------------------------------------------------


@check
async def check_exact_by_hash_returns_the_entry_and_its_vector(make: StoreFactory) -> None:
    v = unit(1, 1)[0]
    async with make() as store:
        e = new("s", "How many legs does a spider have?", v, model="m")
        [eid] = await store.entries.put([e])
        assert eid > 0
        got = await find_exact(store.entries, "s", e.query_hash, NOW + 1)
        assert got is not None and got.id == eid and got.answer == e.answer and got.query == e.query
        assert got.metadata == {"model": "m"}
        assert got.vector is not None and np.allclose(got.vector, v, atol=1e-6)
        assert await find_exact(store.entries, "s", text_hash("another question"), NOW + 1) is None
        fetched = await store.entries.get(eid)
        assert fetched is not None and fetched.answer == e.answer
        assert await store.entries.get(eid + 1000) is None


@check
async def check_find_exact_many_answers_as_each_key_asked_alone(make: StoreFactory) -> None:
    v = unit(3, 6)
    async with make() as store:
        rows = [
            new("a", "q0", v[0]),
            new("a", "q1", None),  # exact-only: found without a vector
            new("a", "q2", v[2], ttl=100),  # expired for a query at NOW + 200
            new("b", "q0", v[3]),  # same text, another scope
            new("b", "q4", v[4]),
        ]
        ids = await store.entries.put(rows)
        await store.entries.delete([ids[4]])
        asked = [
            ExactQuery("a", text_hash("q0"), NOW),
            ExactQuery("b", text_hash("q0"), NOW),
            ExactQuery("a", text_hash("q1"), NOW),
            ExactQuery("a", text_hash("q2"), NOW + 200),
            ExactQuery("a", text_hash("q2"), NOW),
            ExactQuery("b", text_hash("q4"), NOW),  # deleted
            ExactQuery("c", text_hash("q0"), NOW),  # no such scope
            ExactQuery("a", text_hash("q0"), NOW),  # asked twice in one batch
        ]
        many = await store.entries.find_exact_many(asked)
        assert len(many) == len(asked)
        for q, got in zip(asked, many, strict=True):
            alone = await find_exact(store.entries, q.scope, q.query_hash, q.now)  # a batch of one
            assert (got is None) == (alone is None)
            if got is not None and alone is not None:
                assert (got.id, got.scope, got.query, got.answer) == (
                    alone.id, alone.scope, alone.query, alone.answer
                )
                assert (got.vector is None) == (alone.vector is None)
                if got.vector is not None and alone.vector is not None:
                    assert np.allclose(got.vector, alone.vector)
        assert [None if e is None else e.id for e in many] == [
            ids[0], ids[3], ids[1], None, ids[2], None, None, ids[0]
        ]
        assert many[2] is not None and many[2].vector is None
        assert await store.entries.find_exact_many([]) == []


@check
async def check_scopes_are_isolated(make: StoreFactory) -> None:
    v = unit(2, 1)[0]
    async with make() as store:
        same = "What is the boiling point of water?"
        [a] = await store.entries.put([new("tenant-a/chat", same, v)])
        [b] = await store.entries.put([new("tenant-b/chat", same, v)])
        assert a != b
        got_a = await find_exact(store.entries, "tenant-a/chat", text_hash(same), NOW)
        got_b = await find_exact(store.entries, "tenant-b/chat", text_hash(same), NOW)
        assert got_a is not None and got_a.id == a
        assert got_b is not None and got_b.id == b
        assert await ids_found(store.entries, "tenant-a/chat", v, 5) == [a]
        assert await ids_found(store.entries, "tenant-b/chat", v, 5) == [b]
        assert await ids_found(store.entries, "tenant-c/chat", v, 5) == []
        assert await find_exact(store.entries, "tenant-c/chat", text_hash(same), NOW) is None


@check
async def check_put_replaces_the_same_scope_and_hash(make: StoreFactory) -> None:
    v1, v2 = unit(3, 2)
    async with make() as store:
        [old] = await store.entries.put([new("s", "q", v1)])
        [fresh] = await store.entries.put([new("s", "q", v2)])
        assert fresh != old
        assert await store.entries.get(old) is None
        assert await store.maintenance.count() == 1
        # The replaced row's vector is gone with it: only the new one is found.
        assert await ids_found(store.entries, "s", v1, 5) == [fresh]


@check
async def check_top_k_within_a_scope_best_first(make: StoreFactory) -> None:
    base = unit(4, 30)
    async with make() as store:
        ids = await store.entries.put([new("s", f"q{i}", base[i]) for i in range(30)])
        await store.entries.put([new("other", f"o{i}", base[i]) for i in range(30)])
        query = near(base[7], 5, eps=0.02)
        found = await store.entries.search("s", query, 5, NOW)
        assert len(found) == 5
        assert found[0][0].id == ids[7] and found[0][1] > 0.9
        sims = [s for _, s in found]
        assert sims == sorted(sims, reverse=True)
        assert {e.scope for e, _ in found} == {"s"}
        # Exact cosine order, as a brute-force scan ranks them.
        expected = np.argsort(-(base @ (query / np.linalg.norm(query))))[:3].tolist()
        assert [e.id for e, _ in found[:3]] == [ids[i] for i in expected]
        assert await store.entries.search("s", query, 0, NOW) == []


@check
async def check_search_many_answers_as_one_search_each(make: StoreFactory) -> None:
    base = unit(40, 40)
    async with make() as store:
        ids = await store.entries.put(
            [new("a", f"a{i}", base[i], ttl=100 if i % 5 == 0 else 3600) for i in range(25)]
            + [new("b", f"b{i}", base[i]) for i in range(25, 40)]
        )
        await store.entries.delete([ids[3], ids[11]])  # gaps in the rankings
        asked = [
            SearchQuery("a", near(base[3], 41), NOW),
            SearchQuery("b", near(base[30], 42), NOW),
            SearchQuery("a", near(base[10], 43), NOW + 200),  # every fifth row expired by now
            SearchQuery("nowhere", base[0], NOW),
            SearchQuery("a", near(base[10], 43), NOW),
            SearchQuery("b", near(base[2], 44), NOW),
        ]
        many = await store.entries.search_many(asked, 6)
        assert len(many) == len(asked)
        for q, found in zip(asked, many, strict=True):
            alone = await store.entries.search(q.scope, q.vector, 6, q.now)
            assert [(e.id, round(s, 5)) for e, s in found] == [(e.id, round(s, 5)) for e, s in alone]
        assert many[3] == []
        assert {e.scope for e, _ in many[1]} == {"b"} and many[1][0][0].id == ids[30]
        assert ids[3] not in {e.id for e, _ in many[0]}
        assert all(e.expires_at > NOW + 200 for e, _ in many[2]) and len(many[2]) == 6
        assert {e.id for e, _ in many[4]} != {e.id for e, _ in many[2]}  # NOW: those still live
        assert await store.entries.search_many(asked, 0) == [[] for _ in asked]
        assert await store.entries.search_many([], 5) == []


@check
async def check_search_many_reads_past_expired_nearest(make: StoreFactory) -> None:
    """The nearest rows expired, more of them than a first read of candidates holds: the
    search reads on until it has k live ones, the nearest of them first."""
    query = unit(50, 1)[0]
    # 60 rows at decreasing similarity to the query; the 30 nearest expire at NOW + 100.
    vecs = np.stack([near(query, 100 + i, eps=0.02 * (i + 1)) for i in range(60)])
    order = np.argsort(-(vecs @ query))
    rank = np.empty(60, dtype=int)
    rank[order] = np.arange(60)
    rows = [new("s", f"q{i}", vecs[i], ttl=100 if rank[i] < 30 else 3600) for i in range(60)]
    async with make() as store:
        ids = await store.entries.put(rows)
        by_query = {r.query: i for r, i in zip(rows, ids, strict=True)}
        later = NOW + 200
        [many] = await store.entries.search_many([SearchQuery("s", query, later)], 5)
        alone = await store.entries.search("s", query, 5, later)
        assert [e.id for e, _ in many] == [e.id for e, _ in alone]
        assert all(e.expires_at > later for e, _ in many)
        expected = [by_query[f"q{int(i)}"] for i in order[30:35]]
        assert [e.id for e, _ in many] == expected


@check
async def check_a_full_micro_batch_answers_in_order(make: StoreFactory) -> None:
    """64 queries, the most the engine sends at once (PostgreSQL splits them into several
    statements run side by side): every answer is its own query's, in the asked order."""
    base = unit(50, 60)
    async with make() as store:
        ids = await store.entries.put([new("a" if i % 3 else "b", f"m{i}", base[i]) for i in range(60)])
        asked = [SearchQuery("a" if j % 3 else "b", near(base[j % 60], 100 + j), NOW) for j in range(64)]
        many = await store.entries.search_many(asked, 3)
        assert len(many) == 64
        for j, (q, found) in enumerate(zip(asked, many, strict=True)):
            assert found[0][0].id == ids[j % 60]
            alone = await store.entries.search(q.scope, q.vector, 3, q.now)
            assert [e.id for e, _ in found] == [e.id for e, _ in alone]


@check
async def check_ttl_on_read_and_swept(make: StoreFactory) -> None:
    v = unit(6, 2)
    async with make() as store:
        short = new("s", "short-lived", v[0], ttl=10)
        [sid, lid] = await store.entries.put([short, new("s", "long-lived", v[1], ttl=1000)])
        assert await find_exact(store.entries, "s", short.query_hash, NOW + 5) is not None
        assert await find_exact(store.entries, "s", short.query_hash, NOW + 11) is None
        assert sid not in await ids_found(store.entries, "s", v[0], 5, now=NOW + 11)
        assert lid in await ids_found(store.entries, "s", v[0], 5, now=NOW + 11)
        before = store.changes.deletions
        assert await store.maintenance.evict_expired(NOW + 11) == 1
        assert await store.maintenance.count() == 1
        assert await store.entries.get(sid) is None
        assert store.changes.deletions > before
        assert await ids_found(store.entries, "s", v[0], 5, now=NOW) == [lid]


@check
async def check_lru_eviction_at_max_entries(make: StoreFactory) -> None:
    v = unit(7, 8)
    async with make(max_entries=5) as store:
        ids = []
        for i in range(5):
            ids += await store.entries.put([new("s", f"q{i}", v[i], now=NOW + i)])
        await store.entries.touch([ids[0], ids[1]], NOW + 100)  # used recently: kept
        touched = await store.entries.get(ids[0])
        assert touched is not None and touched.hits == 1 and touched.last_access == NOW + 100
        await store.entries.touch([ids[1], ids[1], ids[1]], NOW + 50)  # one hit per occurrence
        again = await store.entries.get(ids[1])
        assert again is not None and again.hits == 4 and again.last_access == NOW + 100
        before = store.changes.deletions
        more = await store.entries.put([new("s", f"q{i}", v[i], now=NOW + 10 + i) for i in (5, 6)])
        assert await store.maintenance.count() == 5
        # Evictions are in the change feed when put returns: memory must not replay them.
        gone = store.changes.deleted_since(before)
        assert store.changes.deletions > before and (gone is None or {ids[2], ids[3]} <= set(gone))
        left = {e.id for e in await store.maintenance.list(100)}
        assert left == {ids[0], ids[1], ids[4], *more}  # q2 and q3: the least recently used
        assert ids[2] not in await ids_found(store.entries, "s", v[2], 5)


@check
async def check_deletions_never_leave_a_stale_vector(make: StoreFactory) -> None:
    v = unit(8, 12)
    async with make() as store:
        ids = await store.entries.put([new("s", f"q{i}", v[i]) for i in range(12)])
        before = store.changes.deletions
        assert await store.entries.delete(ids[:4]) == 4
        assert await store.entries.delete(ids[:4]) == 0  # already gone
        for i in range(4):
            assert ids[i] not in await ids_found(store.entries, "s", v[i], 12)
            assert await find_exact(store.entries, "s", text_hash(f"q{i}"), NOW) is None
        assert len(await store.entries.search("s", v[0], 12, NOW)) == 8
        # The change feed names them, so a process can drop just those from memory.
        gone = store.changes.deleted_since(before)
        assert gone is None or set(ids[:4]) <= set(gone)
        assert store.changes.deleted_since(store.changes.deletions) == []


@check
async def check_rows_without_vectors_are_exact_only_until_attached(make: StoreFactory) -> None:
    v = unit(9, 3)
    now = time.time()  # unindexed() lists rows live by the clock
    async with make() as store:
        [indexed] = await store.entries.put([new("s", "already embedded", v[0], now=now)])
        rows = [new("s", "written first", None, now=now), new("s", "also written first", None, now=now)]
        ids = await store.entries.put(rows)
        got = await find_exact(store.entries, "s", rows[0].query_hash, NOW)
        assert got is not None and got.id == ids[0] and got.vector is None
        assert await ids_found(store.entries, "s", v[1], 5) == [indexed]
        pending = await store.entries.unindexed(100)
        assert [e.id for e in pending] == ids  # oldest first
        assert indexed not in [e.id for e in pending]
        await store.entries.attach_vectors([ids[0]], v[1:2])
        assert (await ids_found(store.entries, "s", v[1], 1)) == [ids[0]]
        assert [e.id for e in await store.entries.unindexed(100)] == [ids[1]]
        # A row deleted before its vector arrives is skipped, not resurrected.
        await store.entries.delete([ids[1]])
        await store.entries.attach_vectors([ids[1]], v[2:3])
        assert await store.entries.get(ids[1]) is None
        assert ids[1] not in await ids_found(store.entries, "s", v[2], 5)
        assert await store.entries.unindexed(100) == []


@check
async def check_unindexed_rows_survive_a_restart(make: StoreFactory) -> None:
    v = unit(10, 1)
    async with make() as store:
        [eid] = await store.entries.put([new("s", "written before a crash", None, now=time.time())])
        expired = new("s", "expired before the restart", None, now=time.time() - 100, ttl=10)
        await store.entries.put([expired])
    async with make() as store:
        assert [e.id for e in await store.entries.unindexed(10)] == [eid]
        await store.entries.attach_vectors([eid], v)
        assert await ids_found(store.entries, "s", v[0], 1) == [eid]
    async with make() as store:
        assert await store.entries.unindexed(10) == []
        assert await ids_found(store.entries, "s", v[0], 1) == [eid]


@check
async def check_clear_by_prefix(make: StoreFactory) -> None:
    v = unit(11, 4)
    async with make() as store:
        await store.entries.put(
            [
                new("acme/chat", "a1", v[0]),
                new("acme/chat-2", "a2", v[1]),
                new("ACME/chat", "upper", v[2]),
                new("other/chat", "o", v[3]),
            ]
        )
        before = store.changes.deletions
        assert await store.maintenance.clear("acme/") == 2  # a prefix, case-sensitive
        assert await store.maintenance.clear("acme") == 0
        assert await store.maintenance.clear("%") == 0  # no wildcards
        assert sorted(e.scope for e in await store.maintenance.list()) == ["ACME/chat", "other/chat"]
        assert store.changes.deletions >= before + 2
        assert await ids_found(store.entries, "acme/chat", v[0], 5) == []
        assert await store.maintenance.clear() == 2
        assert await store.maintenance.count() == 0


@check
async def check_list_is_newest_first_with_paging(make: StoreFactory) -> None:
    async with make() as store:
        ids = await store.entries.put([new("s", f"q{i}", None) for i in range(5)])
        page = await store.maintenance.list(2, 1)
        assert [e.id for e in page] == [ids[3], ids[2]]


@check
async def check_keyset_paging_after_an_id(make: StoreFactory) -> None:
    async with make() as store:
        ids = await store.entries.put([new(f"s{i % 2}", f"q{i}", None) for i in range(5)])
        m = store.maintenance
        assert [e.id for e in await m.list(2, before=ids[3])] == [ids[2], ids[1]]
        assert [e.id for e in await m.list(10, before=ids[1])] == [ids[0]]
        assert await m.list(10, before=ids[0]) == []
        # Pages walked by keyset meet every entry once, as offset paging does.
        seen: list[int] = []
        before: int | None = None
        while page := await m.list(2, before=before):
            seen += [e.id for e in page]
            before = page[-1].id
        assert seen == sorted(ids, reverse=True)


# -- blocklist, counters, change feed -----------------------------------------------------------


@check
async def check_blocklist_with_false_positive_counting(make: StoreFactory) -> None:
    v = unit(12, 3)
    async with make() as store:
        bl = store.blocklist
        assert await bl.count() == 0 and await bl.search(v[0], 1) == []
        a = await bl.add("how to pick a lock", v[0], "unsafe", "safety", 3, {"by": "ops"}, NOW)
        b = await bl.add("buy cheap pills", v[1], "spam", "abuse", 1, {}, NOW + 1)
        assert await bl.count() == 2
        [(hit, sim)] = await bl.search(near(v[0], 13, 0.02), 1)
        assert hit.id == a and hit.reason == "unsafe" and hit.category == "safety" and sim > 0.9
        got = await bl.get(a)
        assert got is not None and got.severity == 3 and got.metadata == {"by": "ops"}
        assert [e.id for e in await bl.list(category="abuse")] == [b]
        assert [e.id for e in await bl.list(limit=1)] == [a]
        assert await bl.report_false_positive(a) == 1
        assert await bl.report_false_positive(a) == 2
        fetched = await bl.get(a)
        assert fetched is not None and fetched.false_positives == 2
        assert await bl.report_false_positive(a + b + 100) == -1
        assert await bl.remove(a) is True and await bl.remove(a) is False
        assert [e.id for e, _ in await bl.search(v[0], 5)] == [b]
        assert await bl.count() == 1


@check
async def check_counters_add_up_and_persist(make: StoreFactory) -> None:
    async with make() as store:
        assert await store.counters.load() == {}
        await store.counters.add({"hits": 2, "saved_usd": 0.5})
        await store.counters.add({"hits": 3})
        await store.counters.add({})
        assert await store.counters.load() == {"hits": 5.0, "saved_usd": 0.5}
    async with make() as store:
        assert await store.counters.load() == {"hits": 5.0, "saved_usd": 0.5}


@check
async def check_change_feed_follows_another_handle(make: StoreFactory) -> None:
    """Two handles on the same space (two processes, two replicas): what one deletes, the
    other's feed reports after ``sync``, and what one writes, the other finds."""
    v = unit(14, 3)
    async with make() as one, make() as two:
        ids = await one.entries.put([new("s", f"q{i}", v[i]) for i in range(3)])
        await two.changes.sync()
        assert await ids_found(two.entries, "s", v[1], 1) == [ids[1]]
        before = two.changes.deletions
        await one.entries.delete([ids[1]])
        await two.changes.sync()
        assert two.changes.deletions > before
        gone = two.changes.deleted_since(before)
        assert gone is None or ids[1] in gone
        assert ids[1] not in await ids_found(two.entries, "s", v[1], 3)


@check
async def check_scope_size_counts_searchable_entries(make: StoreFactory) -> None:
    v = unit(15, 2)
    async with make() as store:
        await store.entries.put([new("sized", "with vector", v[0]), new("sized", "without", None)])
        size = store.entries.scope_size("sized")
        assert size is None or size == 1
        empty = store.entries.scope_size("never-used")
        assert empty is None or empty == 0


@check
async def check_hit_threshold_is_stored_with_the_entry(make: StoreFactory) -> None:
    """An entry's own verbatim threshold (feedback) is read back by every read, survives a
    restart, can be cleared, and goes with its entry."""
    v = unit(40, 2)
    async with make() as store:
        first, second = await store.entries.put(
            [new("s", "how do I water a cactus", v[0]), new("s", "how tall do sunflowers grow", v[1])]
        )
        assert (await store.entries.get(first)).hit_threshold is None  # type: ignore[union-attr]
        assert await store.maintenance.set_hit_threshold(first, 0.9713)
        assert not await store.maintenance.set_hit_threshold(10**9, 0.95)  # no such entry
    async with make() as store:  # a restart: it was stored, not remembered
        got = await store.entries.get(first)
        assert got is not None and got.hit_threshold == pytest.approx(0.9713)
        found = dict((e.id, e) for e, _ in await store.entries.search("s", v[0], 2, NOW))
        assert found[first].hit_threshold == pytest.approx(0.9713)
        assert found[second].hit_threshold is None  # the other entry is untouched
        exact = await find_exact(store.entries, "s", text_hash("how do I water a cactus"), NOW)
        assert exact is not None and exact.hit_threshold == pytest.approx(0.9713)
        listed = {e.id: e.hit_threshold for e in await store.maintenance.list()}
        assert listed[first] == pytest.approx(0.9713) and listed[second] is None
        assert await store.maintenance.set_hit_threshold(first, None)
        assert (await store.entries.get(first)).hit_threshold is None  # type: ignore[union-attr]
        await store.maintenance.set_hit_threshold(second, 1.01)
        # A replaced answer is a new entry: it starts from the global threshold again.
        (replaced,) = await store.entries.put([new("s", "how tall do sunflowers grow", v[1])])
        assert replaced != second and await store.entries.get(second) is None
        assert (await store.entries.get(replaced)).hit_threshold is None  # type: ignore[union-attr]
        assert not await store.maintenance.set_hit_threshold(second, 0.95)  # deleted with it


@check
async def check_blocklist_changes_reach_another_handle(make: StoreFactory) -> None:
    """What one handle adds to or removes from the blocklist, the other's search finds (or
    no longer finds) after ``sync``; an in-memory count it reports is the true one."""
    v = unit(16, 2)
    async with make() as one, make() as two:
        await two.changes.sync()
        assert await two.blocklist.search(v[0], 1) == []
        a = await one.blocklist.add("how to hotwire a car", v[0], "unsafe", "safety", 2, {}, NOW)
        await two.changes.sync()
        [(hit, sim)] = await two.blocklist.search(near(v[0], 17, 0.02), 1)
        assert hit.id == a and sim > 0.9
        known = two.blocklist.known_count()
        assert known is None or known == 1
        assert await one.blocklist.report_false_positive(a) == 1
        await two.changes.sync()
        [(hit, _)] = await two.blocklist.search(v[0], 1)
        assert hit.false_positives == 1
        assert await one.blocklist.remove(a)
        await two.changes.sync()
        assert await two.blocklist.search(v[0], 1) == []
        known = two.blocklist.known_count()
        assert known is None or known == 0
