"""Two real processes sharing one cache directory catch up on each other's writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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
    entry,
    entry_json,
    events,
    opened,
    unit,
    worker,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    path = tmp_path / "worker-stderr.log"
    with path.open("wb") as fh:
        yield fh
    # Shown by pytest when a test fails, to tell what the other process saw.
    print(path.read_text(errors="replace")[-4000:])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", list(PATHS))
async def test_each_process_sees_the_others_writes_and_deletions(
    tmp_path: Path, worker_log: IO[bytes], kind: str, path: str
) -> None:
    cache = tmp_path / "cache"
    v = unit(np.random.default_rng(21), 40)
    opts: dict[str, Any] = {"index": kind, "exact_scan_limit": PATHS[path], "max_entries": 1000}
    async with opened(cache, **opts) as store, worker(worker_log) as other:
        await other.call("open", path=str(cache), dim=DIM, **opts)

        # The other process writes; this one finds the entries with its next search.
        theirs = await other.call("put", entries=[entry_json(entry("s", f"t{i}", v[i])) for i in range(20)])
        for i in (0, 7, 19):
            hits = await store.entries.search("s", v[i], 1, NOW)
            assert hits[0][0].id == theirs[i] and hits[0][0].query == f"t{i}"

        # This process writes; the other finds them.
        mine = await store.entries.put([entry("s", f"m{i}", v[20 + i]) for i in range(20)])
        for i in (0, 13):
            assert (await other.search("s", v[20 + i], 1))[0] == mine[i]

        # Deletions made by one stop being returned by the other.
        assert await other.call("delete", ids=theirs[:5]) == 5
        for i in range(5):
            hits = await store.entries.search("s", v[i], 3, NOW)
            assert theirs[i] not in [e.id for e, _ in hits]
        assert await store.entries.delete(mine[:3]) == 3
        for i in range(3):
            assert mine[i] not in await other.search("s", v[20 + i], 3)

        # A clear by the other empties this one's view of the scope.
        assert await other.call("clear", prefix="s") == 32
        assert await store.entries.search("s", v[30], 5, NOW) == []
        assert store.describe()["index_size"] == 0
        await other.call("close")

    # Both saved their index on close; a new open loads it without rebuilding.
    with capture_logs() as logs:
        async with opened(cache, **opts) as store:
            assert await store.maintenance.count() == 0 and store.describe()["index_size"] == 0
    assert not events(logs, "store.index_rebuilt")


async def test_concurrent_writers(tmp_path: Path, worker_log: IO[bytes]) -> None:
    cache = tmp_path / "cache"
    v = unit(np.random.default_rng(22), 400)
    async with opened(cache, exact_scan_limit=0) as store, worker(worker_log) as other:
        await other.call("open", path=str(cache), dim=DIM, exact_scan_limit=0)

        async def theirs() -> None:
            for start in range(0, 200, 20):
                batch = [entry_json(entry("s", f"t{i}", v[i])) for i in range(start, start + 20)]
                await other.call("put", entries=batch)

        async def mine() -> None:
            for start in range(200, 400, 20):
                await store.entries.put([entry("s", f"m{i}", v[i]) for i in range(start, start + 20)])
                await store.entries.search("s", v[start], 3, NOW)

        async with anyio.create_task_group() as tg:
            tg.start_soon(theirs)
            tg.start_soon(mine)

        assert await store.maintenance.count() == 400
        assert await other.call("count") == 400
        for i in (0, 150, 250, 399):
            prefix = "t" if i < 200 else "m"
            assert (await store.entries.search("s", v[i], 1, NOW))[0][0].query == f"{prefix}{i}"
            assert len(await other.search("s", v[i], 1)) == 1
        assert store.describe()["index_size"] == 400
        assert (await other.call("describe"))["index_size"] == 400
        await other.call("close")


async def test_lru_eviction_in_one_process_reaches_the_other(tmp_path: Path, worker_log: IO[bytes]) -> None:
    cache = tmp_path / "cache"
    v = unit(np.random.default_rng(23), 30)
    async with opened(cache, max_entries=10, exact_scan_limit=0) as store, worker(worker_log) as other:
        await other.call("open", path=str(cache), dim=DIM, max_entries=10, exact_scan_limit=0)
        old = await store.entries.put([entry("s", f"old{i}", v[i], now=NOW + i) for i in range(10)])
        assert len(await other.search("s", v[0], 10)) == 10
        new = await other.call(
            "put", entries=[entry_json(entry("s", f"new{i}", v[10 + i], now=NOW + 100 + i)) for i in range(6)]
        )
        hits = {e.id for e, _ in await store.entries.search("s", v[0], 20, NOW + 200)}
        assert hits == set(old[6:]) | set(new)
        assert store.describe()["index_size"] == 10
        # The expiry sweep in one process reaches the other too.
        assert await store.maintenance.evict_expired(NOW + 10**6) == 10
        assert await other.search("s", v[12], 5) == []
        await other.call("close")


async def test_a_process_starting_later_loads_the_saved_index(tmp_path: Path, worker_log: IO[bytes]) -> None:
    cache = tmp_path / "cache"
    v = unit(np.random.default_rng(24), 300)
    async with worker(worker_log) as other:
        await other.call("open", path=str(cache), dim=DIM)
        ids = await other.call("put", entries=[entry_json(entry("s", f"q{i}", v[i])) for i in range(300)])
        await other.call("close")
    with capture_logs() as logs:
        async with opened(cache, exact_scan_limit=0) as store:
            assert store.describe()["index_size"] == 300
            assert (await store.entries.search("s", v[123], 1, NOW))[0][0].id == ids[123]
    assert not events(logs, "store.index_rebuilt")
