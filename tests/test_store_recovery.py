"""Corrupt, missing or foreign files: moved aside (never deleted), logged, and a fresh start."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from _store_helpers import (  # noqa: F401 - anyio_backend is a fixture
    DIM,
    KINDS,
    NOW,
    anyio_backend,
    capture_logs,
    corrupt_files,
    entry,
    events,
    opened,
    raw_sql,
    unit,
)

from cacheback.core._errors import ConfigError

pytestmark = pytest.mark.anyio

INDEX_FILES = {"hnsw": "index.hnsw", "numpy": "index.npz"}


async def populate(path: Path, kind: str, n: int = 30) -> tuple[list[int], np.ndarray]:
    v = unit(np.random.default_rng(11), n)
    async with opened(path, index=kind) as store:
        ids = await store.entries.put([entry("s", f"q{i}", v[i]) for i in range(n)])
    return ids, v


def aside(path: Path, name: str) -> list[Path]:
    return sorted(path.glob(f"{name}.corrupt-*"))


def tmp_dirs(path: Path) -> list[Path]:
    return sorted(path.glob(".index-tmp-*"))


async def test_garbage_database_is_moved_aside(tmp_path: Path) -> None:
    garbage = os.urandom(3000) + b"definitely not sqlite" * 50
    (tmp_path / "cache.db").write_bytes(garbage)
    (tmp_path / "cache.db-wal").write_bytes(b"junk wal")
    v = unit(np.random.default_rng(1), 2)
    with capture_logs() as logs:
        async with opened(tmp_path) as store:
            [eid] = await store.entries.put([entry("s", "q", v[0])])
            assert (await store.entries.search("s", v[0], 1, NOW))[0][0].id == eid
            assert (await store.entries.find_exact("s", entry("s", "q", None).query_hash, NOW)) is not None
    [kept] = aside(tmp_path, "cache.db")
    assert kept.read_bytes() == garbage  # kept byte for byte, never deleted
    assert aside(tmp_path, "cache.db-wal")[0].read_bytes() == b"junk wal"
    [event] = events(logs, "store.database_corrupt")
    assert event["log_level"] == "warning" and str(kept) in event["moved_to"]
    # The fresh database is a working one.
    assert raw_sql(tmp_path / "cache.db", "SELECT count(*) FROM entries") == [(1,)]


async def test_database_with_a_valid_header_but_damaged_pages(tmp_path: Path) -> None:
    await populate(tmp_path, "hnsw")
    db = tmp_path / "cache.db"
    data = db.read_bytes()
    # The 100-byte header survives, the schema page and everything after it does not.
    bad = data[:100] + os.urandom(len(data) - 100)
    db.write_bytes(bad)
    v = unit(np.random.default_rng(4), 1)
    with capture_logs() as logs:
        async with opened(tmp_path, exact_scan_limit=0) as store:
            assert await store.maintenance.count() == 0  # a fresh start
            [eid] = await store.entries.put([entry("s", "q", v[0])])
            assert [e.id for e, _ in await store.entries.search("s", v[0], 3, NOW)] == [eid]
    assert aside(tmp_path, "cache.db")[0].read_bytes() == bad
    assert events(logs, "store.database_corrupt")


async def test_empty_database_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "cache.db").write_bytes(b"")  # a zero-byte file is a valid empty database
    with capture_logs() as logs:
        async with opened(tmp_path) as store:
            assert await store.maintenance.count() == 0
    assert not events(logs, "store.database_corrupt")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
async def test_corrupt_index_is_moved_aside_and_rebuilt(tmp_path: Path, kind: str, damage: str) -> None:
    ids, v = await populate(tmp_path, kind)
    path = tmp_path / INDEX_FILES[kind]
    data = path.read_bytes()
    if damage == "garbage":
        bad = os.urandom(len(data) // 2 + 7)
    elif damage == "truncated":
        bad = data[: len(data) // 3]
    else:  # same size, one byte changed: only the checksum notices
        pos = len(data) // 2
        bad = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    path.write_bytes(bad)
    with capture_logs() as logs:
        async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
            assert store.describe()["index_size"] == 30
            for i in (0, 17, 29):
                assert (await store.entries.search("s", v[i], 1, NOW))[0][0].id == ids[i]
    [kept] = aside(tmp_path, path.name)
    assert kept.read_bytes() == bad
    assert aside(tmp_path, "index.meta.json")  # its metadata went with it
    assert events(logs, "store.index_corrupt")[0]["log_level"] == "warning"
    assert events(logs, "store.index_rebuilt")
    # The rebuilt index was saved: the next open loads it.
    with capture_logs() as logs:
        async with opened(tmp_path, index=kind, exact_scan_limit=0) as store:
            assert (await store.entries.search("s", v[3], 1, NOW))[0][0].id == ids[3]
    assert not events(logs, "store.index_rebuilt")


async def test_garbage_metadata_is_moved_aside(tmp_path: Path) -> None:
    ids, v = await populate(tmp_path, "hnsw")
    (tmp_path / "index.meta.json").write_bytes(b"{not json")
    with capture_logs() as logs:
        async with opened(tmp_path, exact_scan_limit=0) as store:
            assert (await store.entries.search("s", v[4], 1, NOW))[0][0].id == ids[4]
    assert aside(tmp_path, "index.meta.json")[0].read_bytes() == b"{not json"
    assert aside(tmp_path, "index.hnsw")  # the files it described are not trusted either
    assert events(logs, "store.index_corrupt")


async def test_missing_index_files_rebuild_without_quarantine(tmp_path: Path) -> None:
    ids, v = await populate(tmp_path, "hnsw")
    (tmp_path / "index.hnsw.labels.npy").unlink()
    with capture_logs() as logs:
        async with opened(tmp_path, exact_scan_limit=0) as store:
            assert (await store.entries.search("s", v[8], 1, NOW))[0][0].id == ids[8]
    assert [e["reason"] for e in events(logs, "store.index_rebuild")] == ["missing"]
    assert not corrupt_files(tmp_path)


async def test_index_of_another_dimension_is_rebuilt(tmp_path: Path) -> None:
    ids, v = await populate(tmp_path, "hnsw")
    meta_path = tmp_path / "index.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["dim"] = DIM * 2
    meta_path.write_text(json.dumps(meta))
    with capture_logs() as logs:
        async with opened(tmp_path, exact_scan_limit=0) as store:
            assert (await store.entries.search("s", v[2], 1, NOW))[0][0].id == ids[2]
    assert [e["reason"] for e in events(logs, "store.index_rebuild")] == ["stale"]
    assert json.loads(meta_path.read_text())["dim"] == DIM


async def test_index_of_a_replaced_database_is_not_reused(tmp_path: Path) -> None:
    await populate(tmp_path, "hnsw")
    # The database is gone (say it was moved aside); the old index must not answer for the new one.
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    v = unit(np.random.default_rng(2), 1)
    async with opened(tmp_path, exact_scan_limit=0) as store:
        assert store.describe()["index_size"] == 0
        assert await store.entries.search("s", v[0], 5, NOW) == []
        [eid] = await store.entries.put([entry("s", "new", v[0])])
        assert [e.id for e, _ in await store.entries.search("s", v[0], 5, NOW)] == [eid]


async def test_database_dimension_mismatch_is_a_config_error(tmp_path: Path) -> None:
    await populate(tmp_path, "hnsw")
    with pytest.raises(ConfigError, match="dimensional"):
        async with opened(tmp_path, dim=DIM + 1):
            pass


async def test_index_out_of_step_with_the_database_is_rebuilt(tmp_path: Path) -> None:
    _, v = await populate(tmp_path, "hnsw")
    db = tmp_path / "cache.db"
    # A write that bypassed the changes log (its trigger dropped): the index cannot replay it,
    # but the open notices the index and the database disagree and rebuilds.
    raw_sql(db, "DROP TRIGGER entries_log_add")
    raw_sql(
        db,
        "INSERT INTO entries (scope, query_hash, created_at, expires_at, last_access, vector,"
        " query, answer) VALUES ('s', 'h', ?, ?, ?, ?, 'sneaky', 'x')",
        (NOW, NOW + 3600, NOW, (-v[0]).astype("<f4").tobytes()),
    )
    with capture_logs() as logs:
        async with opened(tmp_path, exact_scan_limit=0) as store:
            assert (await store.entries.search("s", -v[0], 1, NOW))[0][0].query == "sneaky"
    assert events(logs, "store.index_mismatch")
    names = {r[0] for r in raw_sql(db, "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert "entries_log_add" in names  # the schema repaired itself on open


async def test_stale_temporary_save_directories_are_swept(tmp_path: Path) -> None:
    await populate(tmp_path, "hnsw")
    leftover = tmp_path / ".index-tmp-crashed"
    leftover.mkdir()
    (leftover / "index.hnsw").write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    async with opened(tmp_path):
        pass
    assert not leftover.exists()
    assert not tmp_dirs(tmp_path)  # nor any other temporary save directory


async def test_a_locked_database_at_open_is_retried_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from cacheback.adapters.storage._sqlite import Database, is_busy

    ids, v = await populate(tmp_path, "hnsw", n=3)
    real_open = Database.open
    failures = [sqlite3.OperationalError("database is locked")] * 2

    async def flaky_open(self: Database) -> None:
        # What another process's WAL set-up can answer without SQLite's busy wait.
        if failures:
            raise failures.pop()
        await real_open(self)

    monkeypatch.setattr(Database, "open", flaky_open)
    async with opened(tmp_path) as store:
        assert (await store.entries.search("s", v[0], 1, NOW))[0][0].id == ids[0]
    assert failures == [] and aside(tmp_path, "cache.db") == []
    assert is_busy(sqlite3.OperationalError("database table is locked"))
    assert not is_busy(sqlite3.DatabaseError("database disk image is malformed"))
