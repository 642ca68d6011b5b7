"""The embedded store on real SQLite files: entries, search, TTL, LRU, negatives, counters, index."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from _store_helpers import (  # noqa: F401 - anyio_backend is a fixture
    DIM,
    KINDS,
    NOW,
    PATHS,
    anyio_backend,
    capture_logs,
    corrupt_files,
    entry,
    events,
    near,
    opened,
    raw_sql,
    unit,
)

from cacheback.adapters.storage import EmbeddedStore, HnswIndex, NumpyIndex, _hnsw_index, open_index
from cacheback.core._errors import ConfigError, StoreError
from cacheback.core._ports import Store, VectorIndex
from cacheback.core._store_ports import SearchQuery

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[(k, p) for k in KINDS for p in PATHS], ids=lambda p: f"{p[0]}-{p[1]}")
def store_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    kind, path = request.param
    return {"index": kind, "exact_scan_limit": PATHS[path]}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- schema ---------------------------------------------------------------------------------


async def test_schema_wal_and_layout(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.entries.put([entry("s", "q", unit(np.random.default_rng(0), 1)[0])])
    db = tmp_path / "cache.db"
    assert raw_sql(db, "PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in raw_sql(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"entries", "negatives", "counters", "changes", "store_meta"} <= tables
    cols = {r[1]: r[2] for r in raw_sql(db, "PRAGMA table_info(entries)")}
    for name in (
        "id",
        "scope",
        "query",
        "query_hash",
        "answer",
        "payload",
        "vector",
        "created_at",
        "expires_at",
        "last_access",
        "hits",
        "metadata",
    ):
        assert name in cols
    unique = [
        r
        for r in raw_sql(db, "PRAGMA index_list(entries)")
        if r[2] == 1  # unique indexes
    ]
    assert any(
        [c[2] for c in raw_sql(db, f"PRAGMA index_info({r[1]})")] == ["scope", "query_hash"] for r in unique
    )
    assert raw_sql(db, "SELECT op, entry_id FROM changes") == [("add", 1)]
    blob = raw_sql(db, "SELECT vector FROM entries")[0][0]
    assert len(blob) == DIM * 4  # float32
    assert (tmp_path / "index.hnsw").exists() and (tmp_path / "index.meta.json").exists()
    meta = json.loads((tmp_path / "index.meta.json").read_text())
    assert meta["dim"] == DIM and meta["count"] == 1 and meta["watermark"] == 1


async def test_conforms_to_the_store_port(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, DIM, max_entries=10)
    assert isinstance(store, Store)
    with pytest.raises(StoreError):
        await store.maintenance.count()  # not open yet
    assert isinstance(HnswIndex(4), VectorIndex)
    assert isinstance(NumpyIndex(4), VectorIndex)


# -- put / exact ------------------------------------------------------------------------------


async def test_put_get_and_find_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    v = unit(rng, 1)[0]
    async with opened(tmp_path) as store:
        e = entry("s1", "What is 2+2?", v, payload=b"\x00raw", metadata={"model": "m"})
        [eid] = await store.entries.put([e])
        got = await store.entries.find_exact("s1", e.query_hash, NOW + 1)
        assert got is not None and got.id == eid and got.answer == e.answer
        assert got.payload == b"\x00raw" and got.metadata == {"model": "m"}
        assert got.created_at == NOW and got.expires_at == NOW + 3600 and got.hits == 0
        assert await store.entries.find_exact("s2", e.query_hash, NOW + 1) is None  # other scope
        assert await store.entries.find_exact("s1", e.query_hash, NOW + 3600) is None  # expired
        assert (await store.entries.get(eid)) == got
        assert await store.entries.get(eid + 100) is None


async def test_put_replaces_same_scope_and_hash(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    v1, v2 = unit(rng, 2)
    async with opened(tmp_path, **store_kwargs) as store:
        [old] = await store.entries.put([entry("s", "q", v1, answer="old")])
        [new] = await store.entries.put([entry("s", "q", v2, answer="new")])
        assert new != old
        assert await store.entries.get(old) is None
        assert await store.maintenance.count() == 1
        assert store.describe()["index_size"] == 1  # the old vector left the index
        hits = await store.entries.search("s", v1, 5, NOW)
        assert [e.id for e, _ in hits] == [new]
        assert hits[0][0].answer == "new"
    log = raw_sql(tmp_path / "cache.db", "SELECT op, entry_id FROM changes ORDER BY seq")
    assert log == [("add", old), ("del", old), ("add", new)]


async def test_duplicate_keys_in_one_batch(tmp_path: Path, rng: np.random.Generator) -> None:
    v = unit(rng, 3)
    async with opened(tmp_path) as store:
        ids = await store.entries.put(
            [entry("s", "q", v[0], answer="a"), entry("s", "r", v[1]), entry("s", "q", v[2], answer="b")]
        )
        assert ids[0] == ids[2] != ids[1]
        got = await store.entries.get(ids[0])
        assert got is not None and got.answer == "b"
        assert await store.maintenance.count() == 2


async def test_entries_without_vectors_are_exact_only(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    async with opened(tmp_path, **store_kwargs) as store:
        e = entry("s", "plain", None)
        [eid] = await store.entries.put(
            [
                e,
            ]
        )
        assert (await store.entries.find_exact("s", e.query_hash, NOW)) is not None
        assert await store.entries.search("s", unit(rng, 1)[0], 3, NOW) == []
        assert store.describe()["index_size"] == 0
        assert await store.entries.delete([eid]) == 1


async def test_wrong_dimension_is_refused(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        with pytest.raises(ConfigError):
            await store.entries.put([entry("s", "q", np.ones(DIM + 1, dtype=np.float32))])
        with pytest.raises(ConfigError):
            await store.entries.search("s", np.ones(3, dtype=np.float32), 1, NOW)
    with pytest.raises(ConfigError):
        async with opened(tmp_path, dim=DIM * 2):
            pass  # the database holds DIM-sized vectors


# -- search -----------------------------------------------------------------------------------


async def test_search_is_scoped_and_best_first(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    base = unit(rng, 40)
    async with opened(tmp_path, **store_kwargs) as store:
        ids = await store.entries.put(
            [entry("a" if i % 2 == 0 else "b", f"q{i}", base[i]) for i in range(40)]
        )
        for i in (0, 2, 10, 38):
            query = near(base[i], rng, 0.01)
            hits = await store.entries.search("a", query, 5, NOW)
            assert hits[0][0].id == ids[i] and hits[0][1] > 0.99
            assert all(e.scope == "a" for e, _ in hits)
            sims = [s for _, s in hits]
            assert sims == sorted(sims, reverse=True) and len(hits) == 5
            exact = sorted((float(base[j] @ query) for j in range(0, 40, 2)), reverse=True)
            assert np.allclose(sims, exact[:5], atol=1e-4)
        assert await store.entries.search("c", base[0], 5, NOW) == []
        assert await store.entries.search("a", base[0], 0, NOW) == []
        assert len(await store.entries.search("b", base[1], 100, NOW)) == 20


async def test_a_small_scope_is_searched_in_one_hand_over(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A micro-batch whose scopes are small goes to the reader's thread once (the scan, its
    ranking and the rows); the index catches up after it only when someone else committed."""
    base = unit(rng, 20)
    async with opened(tmp_path, exact_scan_limit=10**9) as store:
        ids = await store.entries.put([entry("s", f"q{i}", base[i]) for i in range(20)])
        reader = store.require_db().reader
        calls: list[str] = []
        for name in ("run", "execute_fetchall"):
            original = getattr(reader, name)

            async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
                calls.append(_name)
                return await _original(*args)

            monkeypatch.setattr(reader, name, counted)
        found = await store.entries.search_many(
            [SearchQuery("s", near(base[3], rng, 0.01), NOW), SearchQuery("s", base[8], NOW)], 2
        )
        assert [hits[0][0].id for hits in found] == [ids[3], ids[8]]
        assert calls == ["run"]
        # Another connection commits: the same search also catches the index up.
        raw_sql(tmp_path / "cache.db", "DELETE FROM entries WHERE id = ?", (ids[8],))
        calls.clear()
        hits = await store.entries.search("s", base[8], 2, NOW)
        assert ids[8] not in [e.id for e, _ in hits]
        assert calls[0] == "run" and len(calls) > 1
        assert store.describe()["index_size"] == 19


async def test_expired_hits_never_hide_a_live_entry(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    q = unit(rng, 1)[0]
    async with opened(tmp_path, **store_kwargs) as store:
        stale = [entry("s", f"old{i}", near(q, rng, 0.02), ttl=10) for i in range(60)]
        await store.entries.put(stale)
        live_vec = near(q, rng, 0.6)
        [live] = await store.entries.put([entry("s", "live", live_vec, ttl=10_000)])
        await store.entries.put([entry("other", f"o{i}", near(q, rng, 0.01)) for i in range(20)])
        hits = await store.entries.search("s", q, 1, NOW + 100)
        assert [e.id for e, _ in hits] == [live]
        assert await store.entries.search("s", q, 3, NOW + 20_000) == []


async def test_touch_updates_hits_and_last_access(tmp_path: Path, rng: np.random.Generator) -> None:
    async with opened(tmp_path) as store:
        [eid] = await store.entries.put([entry("s", "q", unit(rng, 1)[0])])
        await store.entries.touch([eid], NOW + 50)
        await store.entries.touch([eid], NOW + 10)  # never moves last_access backwards
        await store.entries.touch([], NOW)
        got = await store.entries.get(eid)
        assert got is not None and got.hits == 2 and got.last_access == NOW + 50


# -- TTL and LRU ------------------------------------------------------------------------------


async def test_evict_expired_and_requeue(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    v = unit(rng, 6)
    async with opened(tmp_path, **store_kwargs) as store:
        await store.entries.put([entry("s", f"short{i}", v[i], ttl=10) for i in range(4)])
        await store.entries.put([entry("s", f"long{i}", v[4 + i], ttl=1000) for i in range(2)])
        assert await store.maintenance.evict_expired(NOW + 5) == 0
        assert await store.maintenance.evict_expired(NOW + 10) == 4  # expires_at <= now is expired
        assert await store.maintenance.count() == 2
        assert store.describe()["index_size"] == 2
        assert await store.maintenance.evict_expired(NOW + 10) == 0
        # An expired (and swept) question can be cached again.
        [again] = await store.entries.put([entry("s", "short0", v[0], now=NOW + 20)])
        hits = await store.entries.search("s", v[0], 1, NOW + 21)
        assert hits[0][0].id == again


async def test_lru_eviction_past_max_entries(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    v = unit(rng, 15)
    async with opened(tmp_path, max_entries=10, **store_kwargs) as store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i], now=NOW + i) for i in range(10)])
        await store.entries.touch(ids[:3], NOW + 100)  # the three oldest become the most recent
        new = await store.entries.put([entry("s", f"n{i}", v[10 + i], now=NOW + 200 + i) for i in range(5)])
        assert await store.maintenance.count() == 10
        evicted = ids[3:8]
        for eid in evicted:
            assert await store.entries.get(eid) is None
        for eid in ids[:3] + ids[8:] + new:
            assert await store.entries.get(eid) is not None
        assert store.describe()["index_size"] == 10
        hits = await store.entries.search("s", v[4], 15, NOW + 300)
        assert not {e.id for e, _ in hits} & set(evicted)
        # An evicted question can be cached again.
        [back] = await store.entries.put([entry("s", "q4", v[4], now=NOW + 400)])
        hits = await store.entries.search("s", v[4], 1, NOW + 401)
        assert hits[0][0].id == back and hits[0][1] > 0.999


async def test_delete_clear_count_and_entries(
    tmp_path: Path, rng: np.random.Generator, store_kwargs: dict[str, Any]
) -> None:
    v = unit(rng, 9)
    async with opened(tmp_path, **store_kwargs) as store:
        ids = await store.entries.put(
            [
                entry(scope, f"{scope}{i}", v[3 * j + i])
                for j, scope in enumerate(["ab1", "ab2", "x"])
                for i in range(3)
            ]
        )
        assert await store.maintenance.count() == 9
        listed = await store.maintenance.list(limit=4)
        assert [e.id for e in listed] == sorted(ids, reverse=True)[:4]  # newest first
        assert [e.id for e in await store.maintenance.list(limit=4, offset=4)] == sorted(ids, reverse=True)[
            4:8
        ]
        assert await store.entries.delete([ids[0], ids[0], 999_999]) == 1
        assert {e.id for e, _ in await store.entries.search("ab1", v[0], 3, NOW)} == set(ids[1:3])
        assert await store.entries.delete([]) == 0
        assert await store.maintenance.clear("AB") == 0  # prefixes are case-sensitive
        assert await store.maintenance.clear("ab") == 5
        assert await store.entries.search("ab2", v[3], 3, NOW) == []
        assert [e.scope for e in await store.maintenance.list()] == ["x"] * 3
        assert await store.maintenance.clear() == 3
        assert await store.maintenance.count() == 0
        assert store.describe()["index_size"] == 0


# -- negatives and counters -------------------------------------------------------------------


async def test_negative_list(tmp_path: Path, rng: np.random.Generator) -> None:
    v = unit(rng, 3)
    async with opened(tmp_path) as store:
        assert await store.blocklist.search(v[0], 3) == []
        a = await store.blocklist.add("how to hack", v[0], "unsafe", "safety", 3, {"by": "ops"}, NOW)
        b = await store.blocklist.add("spam me", v[1], "spam", "abuse", 1, {}, NOW + 1)
        hits = await store.blocklist.search(near(v[0], rng, 0.01), 2)
        assert [e.id for e, _ in hits] == [a, b] and hits[0][1] > 0.99
        assert hits[0][0].reason == "unsafe" and hits[0][0].metadata == {"by": "ops"}
        assert await store.blocklist.count() == 2
        assert [e.id for e in await store.blocklist.list(category="safety")] == [a]
        assert [e.id for e in await store.blocklist.list(limit=1)] == [a]
        assert await store.blocklist.report_false_positive(a) == 1
        assert await store.blocklist.report_false_positive(a) == 2
        assert await store.blocklist.report_false_positive(9999) == -1
        got = await store.blocklist.get(a)
        assert got is not None and got.false_positives == 2 and got.severity == 3
        assert (await store.blocklist.search(v[0], 1))[0][0].false_positives == 2  # refreshed
        assert await store.blocklist.remove(b) is True
        assert await store.blocklist.remove(b) is False
        assert [e.id for e, _ in await store.blocklist.search(v[1], 5)] == [a]
    # Durable: a fresh open sees it, and so does another open store once the table changes.
    async with opened(tmp_path) as one, opened(tmp_path) as two:
        assert await one.blocklist.count() == 1
        assert len(await two.blocklist.search(v[2], 5)) == 1
        c = await one.blocklist.add("third", v[2], "r", "safety", 2, {}, NOW)
        assert (await two.blocklist.search(v[2], 1))[0][0].id == c
        await one.blocklist.remove(c)
        assert [e.id for e, _ in await two.blocklist.search(v[2], 5)] == [a]


async def test_counters(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        assert await store.counters.load() == {}
        await store.counters.add({"hits": 1, "saved_usd": 0.25})
        await store.counters.add({"hits": 2, "misses": 1})
        await store.counters.add({})
    async with opened(tmp_path) as store:
        assert await store.counters.load() == {"hits": 3.0, "saved_usd": 0.25, "misses": 1.0}


async def test_describe(tmp_path: Path, rng: np.random.Generator) -> None:
    async with opened(tmp_path, index="numpy") as store:
        await store.entries.put([entry("s", "q", unit(rng, 1)[0])])
        d = store.describe()
        assert d["backend"] == "embedded" and d["path"] == str(tmp_path)
        assert d["index"] == "numpy" and d["index_size"] == 1 and d["dim"] == DIM


# -- persistence and catch-up -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_reopen_loads_index_without_rebuild(
    tmp_path: Path, rng: np.random.Generator, kind: str
) -> None:
    v = unit(rng, 50)
    async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i]) for i in range(50)])
        await store.entries.delete(ids[:10])
    with capture_logs() as logs:
        async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
            assert store.describe()["index_size"] == 40
            hits = await store.entries.search("s", v[20], 1, NOW)
            assert hits[0][0].id == ids[20]
            hits = await store.entries.search("s", v[5], 1, NOW)
            assert len(hits) == 1 and hits[0][0].id != ids[5]
    assert not events(logs, "store.index_rebuilt")


@pytest.mark.parametrize("kind", KINDS)
async def test_catch_up_replays_writes_the_saved_index_missed(
    tmp_path: Path, rng: np.random.Generator, kind: str
) -> None:
    v = unit(rng, 30)
    async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i]) for i in range(20)])
    db = tmp_path / "cache.db"
    # Writes the saved index never saw (a crashed process, a maintenance script): the
    # triggers log them, so the next open replays them instead of rebuilding.
    for i in range(20, 30):
        raw_sql(
            db,
            "INSERT INTO entries (scope, query_hash, created_at, expires_at, last_access, vector,"
            " query, answer) VALUES ('s', ?, ?, ?, ?, ?, ?, 'x')",
            (f"h{i}", NOW, NOW + 3600, NOW, v[i].astype("<f4").tobytes(), f"q{i}"),
        )
    raw_sql(db, "DELETE FROM entries WHERE id IN (?, ?)", (ids[0], ids[1]))
    with capture_logs() as logs:
        async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
            assert store.describe()["index_size"] == 28
            hits = await store.entries.search("s", v[25], 1, NOW)
            assert hits[0][0].query == "q25"
            assert (await store.entries.search("s", v[0], 1, NOW))[0][0].id != ids[0]
            # And writes made behind the back of an open store are picked up before a search.
            raw_sql(db, "DELETE FROM entries WHERE query = 'q25'")
            assert (await store.entries.search("s", v[25], 1, NOW))[0][0].query != "q25"
            assert store.describe()["index_size"] == 27
    assert not events(logs, "store.index_rebuilt")


async def test_switching_index_kind_rebuilds(tmp_path: Path, rng: np.random.Generator) -> None:
    v = unit(rng, 10)
    async with opened(tmp_path, index="hnsw") as store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i]) for i in range(10)])
    with capture_logs() as logs:
        async with opened(tmp_path, index="numpy", exact_scan_limit=0) as store:
            assert (await store.entries.search("s", v[3], 1, NOW))[0][0].id == ids[3]
    assert events(logs, "store.index_rebuilt")
    assert (tmp_path / "index.npz").exists()
    assert not corrupt_files(tmp_path)


async def test_pruned_log_makes_a_lagging_store_rebuild(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cacheback.adapters.storage import _embedded_entries

    monkeypatch.setattr(_embedded_entries, "MIN_KEEP_CHANGES", 5)
    v = unit(rng, 40)
    async with opened(tmp_path, max_entries=5, exact_scan_limit=0) as lagging:
        await lagging.entries.put([entry("s", "first", v[0], now=NOW - 100)])
        assert len(await lagging.entries.search("s", v[0], 1, NOW)) == 1
        async with opened(tmp_path, max_entries=5, exact_scan_limit=0) as busy:
            for i in range(1, 40):
                await busy.entries.put([entry("s", f"q{i}", v[i], now=NOW + i)])
            await busy.maintenance.evict_expired(NOW)  # also trims the log to the last 5 changes
            pruned = raw_sql(tmp_path / "cache.db", "SELECT min(seq) FROM changes")[0][0]
            assert pruned > 10
        with capture_logs() as logs:
            hits = await lagging.entries.search("s", v[39], 1, NOW + 50)
        assert hits[0][0].query == "q39"
        assert events(logs, "store.index_behind_log")
        assert lagging.describe()["index_size"] == 5


# -- hnswlib fallback -------------------------------------------------------------------------


async def test_auto_falls_back_to_numpy_without_hnswlib(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hnsw_index, "_hnswlib", None)
    with capture_logs() as logs:
        store = EmbeddedStore(tmp_path, DIM, max_entries=10, index="auto")
    assert events(logs, "store.hnswlib_missing")
    assert store.describe()["index"] == "numpy"
    with pytest.raises(ConfigError):
        EmbeddedStore(tmp_path, DIM, max_entries=10, index="hnsw")
    with pytest.raises(ConfigError):
        EmbeddedStore(tmp_path, DIM, max_entries=10, index="faiss")  # type: ignore[arg-type]
    assert isinstance(open_index("auto", 4), NumpyIndex)
    monkeypatch.undo()
    assert isinstance(open_index("auto", 4), HnswIndex)
    v = unit(rng, 3)
    async with store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i]) for i in range(3)])
        assert (await store.entries.search("s", v[1], 1, NOW))[0][0].id == ids[1]


async def test_concurrent_coroutines_share_one_store(tmp_path: Path, rng: np.random.Generator) -> None:
    v = unit(rng, 400)
    async with opened(tmp_path, exact_scan_limit=50) as store:

        async def client(n: int) -> None:
            for j in range(10):
                i = n * 20 + 2 * j
                ids = await store.entries.put(
                    [entry(f"s{n % 4}", f"q{i}", v[i]), entry("all", f"q{i}", v[i + 1])]
                )
                hits = await store.entries.search(f"s{n % 4}", v[i], 1, NOW)
                assert hits[0][0].id == ids[0]
                await store.entries.touch([ids[1]], NOW + j)
                assert await store.entries.find_exact("all", entry("all", f"q{i}", None).query_hash, NOW)

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(client, n)
        assert await store.maintenance.count() == 400
        assert store.describe()["index_size"] == 400
        assert len(await store.entries.search("all", v[1], 500, NOW)) == 200


# -- nothing blocks the event loop ------------------------------------------------------------


async def test_no_blocking_calls_on_the_event_loop(
    tmp_path: Path, rng: np.random.Generator, blocking_detector: Any
) -> None:
    v = unit(rng, 700)
    blocking_detector.install()
    try:
        async with opened(tmp_path, exact_scan_limit=600) as store:
            await store.entries.put([entry("big", f"q{i}", v[i]) for i in range(700)])
            await store.entries.put([entry("small", f"s{i}", v[i]) for i in range(5)])
            await store.entries.search("big", v[0], 5, NOW)
            await store.entries.search("small", v[0], 5, NOW)
            await store.entries.find_exact("big", "x", NOW)
            await store.blocklist.add("n", v[0], "r", "c", 1, {}, NOW)
            await store.blocklist.search(v[0], 1)
            await store.maintenance.evict_expired(NOW)
        async with opened(tmp_path) as store:
            await store.entries.search("big", v[0], 5, NOW)
    finally:
        blocking_detector.uninstall()
    assert blocking_detector.calls == []


# -- the index implementations ----------------------------------------------------------------


def make_index(kind: str, dim: int, capacity: int = 16) -> HnswIndex | NumpyIndex:
    return HnswIndex(dim, capacity=capacity) if kind == "hnsw" else NumpyIndex(dim, capacity=capacity)


@pytest.mark.parametrize("kind", KINDS)
def test_index_contract(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    v = unit(rng, 300, 8)
    index = make_index(kind, 8)
    assert index.search(v[0], 3) == []
    index.add(list(range(300)), v * 3.0)  # grows past the capacity; normalised on the way in
    assert len(index) == 300
    hits = index.search(v[5], 3)
    assert hits[0][0] == 5 and abs(hits[0][1] - 1.0) < 1e-4
    assert [h[1] for h in hits] == sorted((h[1] for h in hits), reverse=True)
    even = index.search(v[5], 4, allowed=lambda i: i % 2 == 0)
    assert len(even) == 4 and all(i % 2 == 0 for i, _ in even)
    # Fewer allowed ids than k: whatever exists, no error.
    assert sorted(i for i, _ in index.search(v[5], 10, allowed=lambda i: i in (1, 2))) == [1, 2]
    index.remove([5, 5, 1000])
    assert len(index) == 299 and 5 not in [i for i, _ in index.search(v[5], 5)]
    index.add([5], v[5:6])  # a removed label can come back
    assert index.search(v[5], 1)[0][0] == 5 and len(index) == 300
    index.add([6], v[7:8])  # re-adding a live label moves it
    assert index.search(v[7], 2)[1][0] in (6, 7) and len(index) == 300
    assert index.describe()["size"] == 300 and index.dim == 8
    names = index.save(tmp_path)
    loaded = type(index).load(tmp_path, 8)
    assert len(loaded) == 300 and loaded.search(v[9], 1)[0][0] == 9
    assert all((tmp_path / n).exists() for n in names)
    loaded.remove(list(range(0, 300, 2)))
    loaded.add([1000, 1001], v[:2])  # reuses deleted slots
    assert len(loaded) == 152 and loaded.search(v[0], 1)[0][0] in (0, 1000)
    with pytest.raises(ConfigError):
        index.add([1], np.ones((1, 9), dtype=np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_index_is_thread_safe(kind: str) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng, 2000, 16)
    index = make_index(kind, 16)
    index.add(list(range(200)), v[:200])
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, start + 600, 20):
                index.add(list(range(i, i + 20)), v[i : i + 20])
                index.remove([i])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(300):
                hits = index.search(v[i % 200 + 1], 5, allowed=lambda label: label % 3 != 0)
                assert all(label % 3 != 0 for label, _ in hits)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (200, 800, 1400)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 200 + 3 * (600 - 30)


def test_hnsw_slots_are_reused_under_churn() -> None:
    rng = np.random.default_rng(5)
    index = HnswIndex(8, capacity=64)
    label = 0
    for _ in range(30):  # 30 rounds of "insert 50, evict the 50 before"
        v = unit(rng, 50, 8)
        index.add(list(range(label, label + 50)), v)
        index.remove(list(range(label - 50, label)))
        label += 50
    d = index.describe()
    assert d["size"] == 50 and d["slots_used"] <= 100 and d["capacity"] <= 1024
