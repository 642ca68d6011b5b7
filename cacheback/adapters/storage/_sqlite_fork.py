"""SQLite connections across ``os.fork()``: a forked child must not inherit SQLite's lock state.

SQLite's unix VFS keeps, in ordinary process memory, one record per open database file (the
"inode list") with the lock each of this process's connections holds: on the database file,
and on the bytes of the WAL index (``-shm``) that stand for the WAL write lock, the checkpoint
lock and the reader slots. Before asking the kernel for a POSIX lock, SQLite checks that record,
so that two connections of one process never block each other in the kernel (POSIX locks
belong to the process, not to a connection). A fork copies that memory but not the POSIX locks,
so the child starts with a record of locks it does not hold, owned by connections it cannot use
(their aiosqlite threads did not come along). Reproduced here (``sqlite3`` alone, 3.40):

* a connection of the parent inside a write transaction at the fork (``BEGIN IMMEDIATE`` taken,
  not yet committed: the persister or the indexer thread at work) leaves the WAL write lock
  marked as held by a sibling in the child's record, for ever: every ``BEGIN IMMEDIATE`` of the
  child is refused with SQLITE_BUSY, even once the parent has committed and the kernel shows no
  lock at all. The child's engine waits its busy timeout (10 s) in ``Database.open``, and the
  engine retries: a pool worker that never answers (the "1 run in 4" hang).
* even when the parent was idle, the child's own new connections share the copied record: SQLite
  believes the child already holds the shared lock on the database file and on the WAL index, and
  never asks the kernel. When the parent then closes its last connection, it finds no other
  process in the kernel's lock table, checkpoints and deletes the WAL and its index while the
  child still writes to them: what the child commits afterwards is lost.

The cure, in two halves:

1. Quiesce before the fork (``_before_fork``): every SQLite call this process makes through
   ``GatedConnection`` and every write transaction (``transaction``) counts itself in; the
   fork waits (at most ``FORK_WAIT_S``) until none is in progress and holds new ones back until
   it is done. So no connection is mid-statement (holding SQLite's mutexes) or inside a write
   transaction when the memory is copied.
2. In the child (``_after_in_child``), close every connection inherited from the parent, from
   the one thread the child has. For an idle connection this only changes the child's own
   memory and its own (non-existent) POSIX locks; the close's attempt at an exclusive lock (to
   checkpoint and delete the WAL) fails in the kernel on the parent's shared lock. Once they are
   closed the child's inode list is empty, and the child's own connections take real locks,
   exactly as in a process started afresh.

Should the fork not become quiet in time, or be made on a thread that has work open itself (the
very event loop that holds a transaction open: waiting would be in vain), it goes on, and nothing
is closed in the child (closing a connection inside a write transaction would roll it back into
the WAL index the parent is using): the connections are kept referenced for good, and the child's
store may then stay busy, as before this module.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import anyio
import anyio.to_thread

from cacheback._logging import get_logger

T = TypeVar("T")

log = get_logger("cacheback.store")

FORK_WAIT_S = 10.0  # a fork waits at most this long for SQLite work in progress to end


class _Gate:
    """Counts SQLite work in progress; a fork waits for none and holds new work back.

    Work is counted per thread that runs it (an event loop's thread for async work), so that
    a fork made on a thread that has work open itself does not wait for it in vain.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.busy: Counter[int] = Counter()
        self.forking = False

    def try_enter(self, thread: int) -> bool:
        with self.cond:
            if self.forking:
                return False
            self.busy[thread] += 1
            return True

    def enter(self, thread: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: not self.forking)
            self.busy[thread] += 1

    def leave(self, thread: int) -> None:
        with self.cond:
            self.busy[thread] -= 1
            if self.busy[thread] <= 0:
                del self.busy[thread]
            if not self.busy:
                self.cond.notify_all()

    def quiesce(self, timeout: float) -> bool:
        """Hold new work back; True once none is in progress (False: gave up waiting)."""
        with self.cond:
            self.forking = True
            if threading.get_ident() in self.busy:
                return False  # this very thread has work open: it cannot end while we wait
            return self.cond.wait_for(lambda: not self.busy, timeout)

    def release(self) -> None:
        with self.cond:
            self.forking = False
            self.cond.notify_all()


_gate = _Gate()
_quiet_at_fork = True
# Every raw connection opened through this module (sqlite3.connect's factory registers it).
_OPENED: weakref.WeakSet[_Registered] = weakref.WeakSet()
# In a forked child, inherited connections that could not be closed safely: never collected
# (the collector would close them, rolling a write transaction back into the shared WAL index).
_ORPHANS: list[sqlite3.Connection] = []


class _Registered(sqlite3.Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _OPENED.add(self)


@asynccontextmanager
async def sqlite_work() -> AsyncIterator[None]:
    """Hold back a fork while the block runs (one statement, or a whole transaction)."""
    thread = threading.get_ident()  # the event loop's: the work runs from it
    if not _gate.try_enter(thread):  # a fork is under way: wait for it off the event loop
        await anyio.to_thread.run_sync(_gate.enter, thread)
    try:
        yield
    finally:
        _gate.leave(thread)


@contextmanager
def sqlite_work_sync() -> Iterator[None]:
    """The same for a blocking SQLite user on a worker thread (open, use and close inside)."""
    thread = threading.get_ident()
    _gate.enter(thread)
    try:
        yield
    finally:
        _gate.leave(thread)


class GatedConnection:
    """An aiosqlite connection whose every call counts as SQLite work (see the module doc)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._held = False  # inside transaction(): its calls are already counted

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        if self._held:
            yield
            return
        async with sqlite_work():
            yield

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[GatedConnection]:
        """Count the block as one piece of work (the caller serialises transactions)."""
        async with sqlite_work():
            self._held = True
            try:
                yield self
            finally:
                self._held = False

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        async with self._call():
            return await self._conn.execute(sql, params)

    async def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> aiosqlite.Cursor:
        async with self._call():
            return await self._conn.executemany(sql, params)

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()) -> Iterable[sqlite3.Row]:
        async with self._call():
            return await self._conn.execute_fetchall(sql, params)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the connection's own thread: several statements (and
        what is computed between them) for one hand-over instead of one each."""
        async with self._call():
            # aiosqlite's queue of calls for its thread (what execute() itself goes through).
            result: T = await self._conn._execute(work, self._conn._conn)  # type: ignore[no-untyped-call]
            return result

    async def executescript(self, script: str) -> None:
        async with self._call():
            await self._conn.executescript(script)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._call():
                await self._conn.close()


async def connect(path: Path) -> GatedConnection:
    # isolation_level=None: autocommit; every write transaction is an explicit BEGIN IMMEDIATE.
    # check_same_thread=False: a forked child closes it from its own thread (aiosqlite's is gone).
    async with sqlite_work():
        conn = await aiosqlite.connect(
            str(path), isolation_level=None, check_same_thread=False, factory=_Registered
        )
    return GatedConnection(conn)


def _before_fork() -> None:
    global _quiet_at_fork
    _quiet_at_fork = _gate.quiesce(FORK_WAIT_S)


def _after_in_parent() -> None:
    _gate.release()


def _after_in_child() -> None:
    global _gate
    _gate = _Gate()  # the parent's threads (and their counts) did not come along
    inherited = list(_OPENED)
    _OPENED.clear()
    if not _quiet_at_fork:
        _ORPHANS.extend(inherited)
        log.warning("store.fork_not_quiet", connections=len(inherited), waited_s=FORK_WAIT_S)
        return
    for conn in inherited:
        try:
            conn.close()
        except sqlite3.Error as exc:  # keep it, never collected, rather than fail the fork
            _ORPHANS.append(conn)
            log.warning("store.fork_close_failed", error=repr(exc))


os.register_at_fork(before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
