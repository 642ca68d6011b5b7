"""A write whose task is cancelled while its statements wait for the SQLite connection's
thread must not leave a transaction open behind it (real SQLite file).

aiosqlite runs every queued call on the connection's own thread even when the task that
queued it has been cancelled, so a ``BEGIN IMMEDIATE`` queued behind other work can start
a transaction after its writer has given up; every later write then failed with "cannot
start a transaction within a transaction".
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from cacheback.adapters.storage._sqlite import Database

pytestmark = pytest.mark.anyio


async def _cancel_a_write_queued_behind(db: Database, blocker: threading.Event) -> None:
    writer = db._w
    assert writer is not None
    async with anyio.create_task_group() as tg:
        # The writer connection's thread is busy: the next statement waits in its queue.
        tg.start_soon(writer.run, lambda conn: blocker.wait(10))
        await anyio.sleep(0.05)

        async def release_later() -> None:
            await anyio.sleep(0.3)
            blocker.set()  # the queued BEGIN (and whatever came after it) now runs

        tg.start_soon(release_later)
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + 0.1
            await db.add_counters({"cancelled": 1})
        assert scope.cancelled_caught, "the write finished before it could be cancelled"


async def test_a_write_cancelled_in_the_connection_queue_leaves_no_transaction_open(tmp_path: Path) -> None:
    db = Database(tmp_path / "cache.db")
    await db.open()
    try:
        await _cancel_a_write_queued_behind(db, threading.Event())
        await db.add_counters({"next": 2})  # raised StoreError before the fix
        counters = await db.load_counters()
        assert counters.get("next") == 2
        assert "cancelled" not in counters  # the cancelled write was rolled back, not kept
    finally:
        await db.close()


async def test_the_next_writer_sees_its_write_persisted_after_a_cancelled_one(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    db = Database(path)
    await db.open()
    try:
        await _cancel_a_write_queued_behind(db, threading.Event())
        await db.add_counters({"kept": 1})
    finally:
        await db.close()
    again = Database(path)
    await again.open()
    try:
        assert (await again.load_counters()).get("kept") == 1
    finally:
        await again.close()
