"""The store contract (tests/store_contract.py) over every storage backend.

To add a backend, add a factory to ``BACKENDS``: given the test's temporary directory, it
returns a ``StoreFactory`` that opens the backend over one storage space (the same space on
every call, so a second call is a restart or a second process's handle).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from store_contract import CHECKS, DIM, Check, StoreFactory

from cacheback.adapters.storage import EmbeddedStore
from cacheback.core._store_ports import Store

pytestmark = pytest.mark.anyio


def embedded(index: str, exact_scan_limit: int = 0) -> Callable[[Path], StoreFactory]:
    def factory(tmp: Path) -> StoreFactory:
        @asynccontextmanager
        async def make(*, max_entries: int = 1000) -> AsyncIterator[Store]:
            # exact_scan_limit=0: every search goes through the index under test; a huge one:
            # every search scans the scope's vectors in SQLite.
            store = EmbeddedStore(
                tmp / "cache", DIM, max_entries=max_entries, index=index, exact_scan_limit=exact_scan_limit
            )
            await store.open()
            try:
                yield store
            finally:
                await store.close()

        return make

    return factory


def postgres(url: str) -> StoreFactory:
    """PostgreSQL + pgvector: the storage space is the test's own PostgreSQL schema."""
    from cacheback.adapters.storage.postgres import PostgresStore

    @asynccontextmanager
    async def make(*, max_entries: int = 1000) -> AsyncIterator[Store]:
        store = PostgresStore(url, DIM, max_entries=max_entries, timeout=10.0)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return make


BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite-hnsw": embedded("hnsw"),
    "sqlite-numpy": embedded("numpy"),
    "sqlite-scan": embedded("hnsw", exact_scan_limit=10**9),
}
#: Backends on a server: given a URL to a fresh space (the session's PostgreSQL, started
#: only when one of these runs).
SERVER_BACKENDS: dict[str, Callable[[str], StoreFactory]] = {"postgres": postgres}


@pytest.fixture(params=sorted([*BACKENDS, *SERVER_BACKENDS]))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param in SERVER_BACKENDS:
        return SERVER_BACKENDS[request.param](request.getfixturevalue("pg_url"))
    return BACKENDS[request.param](tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_store_contract(check: Check, make_store: StoreFactory) -> None:
    await check(make_store)
