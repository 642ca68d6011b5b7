"""The embedded store's SQLite file shared by a process and its forked child (real files, real fork).

SQLite keeps its lock records per process, in memory a fork copies: these tests fork at the
moments that broke the child (see cacheback/adapters/storage/_sqlite_fork.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter (argv: database path): forks from a worker thread while the
# event loop goes on, as a multiprocessing pool started beside a busy engine does.
PRELUDE = """
import asyncio, os, signal, sys
from pathlib import Path
import anyio, anyio.to_thread
from cacheback.adapters.storage._sqlite import Database
path = Path(sys.argv[1])

def fork(child):
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a child that hangs must end
        try:
            asyncio.run(child())
        except BaseException as exc:
            print("child failed:", repr(exc), flush=True)
            os._exit(1)
        os._exit(0)
    return pid

async def wait(pid):
    return os.waitstatus_to_exitcode((await anyio.to_thread.run_sync(os.waitpid, pid, 0))[1])

async def counters():
    db = Database(path)
    await db.open()
    try:
        return await db.load_counters()
    finally:
        await db.close()
"""

FORK_IN_A_TRANSACTION = """
async def child():
    db = Database(path)
    await db.open()  # its schema script starts with BEGIN IMMEDIATE
    await db.add_counters({"child": 1})
    await db.close()

async def main():
    db = Database(path)
    await db.open()
    inside = anyio.Event()

    async def write():
        async with db._write() as w:
            await w.execute("INSERT INTO counters (name, value) VALUES ('parent', 1)")
            inside.set()
            await anyio.sleep(0.5)  # a transaction still open when the fork is asked for

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await inside.wait()
        pid = await anyio.to_thread.run_sync(fork, child)
    print("child exit", await wait(pid), flush=True)
    await db.close()
    print("counters", sorted(await counters()), flush=True)

asyncio.run(main())
"""


def run(script: str, db: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + script, str(db)], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_a_child_forked_during_a_write_transaction_can_write(tmp_path: Path) -> None:
    # Before: the child's copy of SQLite's records showed the WAL write lock held by the
    # parent's writer for good, and its BEGIN IMMEDIATE was refused (busy) after 10 s.
    lines = run(FORK_IN_A_TRANSACTION, tmp_path / "cache.db")
    assert "child exit 0" in lines, lines
    assert "counters ['child', 'parent']" in lines, lines


PARENT_CLOSES_FIRST = """
async def main():
    db = Database(path)
    await db.open()
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()

    async def child():
        own = Database(path)
        await own.open()
        await own.add_counters({"before": 1})
        os.write(from_child, b"w")
        os.read(to_child, 1)  # the parent has closed its store
        await own.add_counters({"after": 1})
        await own.close()

    pid = await anyio.to_thread.run_sync(fork, child)
    await anyio.to_thread.run_sync(os.read, to_parent, 1)
    await db.close()  # the parent is done first, while its child still works
    os.write(from_parent, b"c")
    print("child exit", await wait(pid), flush=True)
    print("counters", sorted(await counters()), flush=True)

asyncio.run(main())
"""


def test_a_childs_writes_survive_its_parent_closing_the_store_first(tmp_path: Path) -> None:
    # Before: the child's connections shared the parent's copied lock records and held no
    # lock of their own, so the parent's close, seeing no other user, checkpointed and
    # deleted the WAL under the child: the child's later commit was lost.
    lines = run(PARENT_CLOSES_FIRST, tmp_path / "cache.db")
    assert "child exit 0" in lines, lines
    assert "counters ['after', 'before']" in lines, lines
