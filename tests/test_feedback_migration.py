"""Stores written before per-entry thresholds existed are migrated on open, keeping every entry.

SQLite: a schema-1 file (the entries table without ``hit_threshold``) is brought to schema 2.
PostgreSQL: a schema migrated to version 3 gets version 5 (``entry_access.hit_threshold``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from _store_helpers import DIM, NOW, entry, opened, raw_sql, unit

from cacheback.adapters.storage import _sqlite
from cacheback.adapters.storage.postgres import PostgresStore, _schema
from cacheback.adapters.storage.postgres._connection import split_url
from cacheback.core._errors import StoreError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_schema_1_sqlite_file_gains_the_column_and_keeps_its_entries(tmp_path: Path) -> None:
    vectors = unit(np.random.default_rng(3), 2)
    async with opened(tmp_path) as store:
        ids = await store.entries.put([entry("s", "how do owls see at night", vectors[0]),
                                       entry("s", "why do cats purr", vectors[1])])  # fmt: skip
    db = tmp_path / "cache.db"
    # What the previous version wrote: the same table without the column, schema version 1.
    raw_sql(db, "ALTER TABLE entries DROP COLUMN hit_threshold")
    raw_sql(db, "UPDATE store_meta SET value = 1 WHERE key = 'schema_version'")
    async with opened(tmp_path) as store:
        assert [e.hit_threshold for e in await store.maintenance.list()] == [None, None]
        assert await store.maintenance.set_hit_threshold(ids[0], 0.965)
        found = await store.entries.search("s", vectors[0], 1, NOW)
        assert found[0][0].id == ids[0] and found[0][0].hit_threshold == pytest.approx(0.965)
    assert raw_sql(db, "SELECT value FROM store_meta WHERE key = 'schema_version'") == [(2,)]
    assert "hit_threshold" in {r[1] for r in raw_sql(db, "PRAGMA table_info(entries)")}


async def test_a_newer_sqlite_file_is_refused(tmp_path: Path) -> None:
    async with opened(tmp_path):
        pass
    raw_sql(tmp_path / "cache.db", "UPDATE store_meta SET value = ? WHERE key = 'schema_version'",
            (_sqlite.SCHEMA_VERSION + 1,))  # fmt: skip
    with pytest.raises(StoreError, match="schema version"):
        async with opened(tmp_path):
            pass


async def test_a_version_3_postgres_schema_is_migrated_with_its_entries(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = split_url(pg_url)
    everything = _schema.migrations

    def up_to_3(name: str, dim: int) -> list[tuple[int, str]]:
        return [(v, sql) for v, sql in everything(name, dim) if v <= 3]

    conn: Any = await asyncpg.connect(url)
    try:
        with monkeypatch.context() as patch:  # the previous version's migrations only
            patch.setattr(_schema, "migrations", up_to_3)
            await _schema.migrate(conn, schema, DIM)
        entry_id = await conn.fetchval(
            f"INSERT INTO {schema}.entries (scope, query_hash, created_at, expires_at, query, answer)"
            " VALUES ('s', 'h', $1, $2, 'how do owls see at night', 'well') RETURNING id",
            NOW, NOW + 3600,
        )  # fmt: skip
        access = f"INSERT INTO {schema}.entry_access (id, last_access) VALUES ($1, $2)"
        await conn.execute(access, entry_id, NOW)
    finally:
        await conn.close()
    store = PostgresStore(pg_url, DIM, timeout=5.0)
    await store.open()
    try:
        got = await store.entries.get(entry_id)
        assert got is not None and got.query == "how do owls see at night" and got.hit_threshold is None
        assert await store.maintenance.set_hit_threshold(entry_id, 0.97)
        again = await store.entries.get(entry_id)
        assert again is not None and again.hit_threshold == pytest.approx(0.97)
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        versions = [int(r[0]) for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")]
    finally:
        await conn.close()
    assert sorted(versions) == [v for v, _ in _schema.migrations(schema, DIM)]
