"""The change feed across replicas: LISTEN on the store's channel.

Every deletion (by any replica, or by hand in psql) notifies the deleted ids at commit; a
dedicated connection per process listens, so a replica's in-process exact-hit map drops
them within milliseconds. Deletions this process makes are recorded at once (not only when
their notification comes back). While the listening connection is down nothing is known:
``deleted_since`` answers None for that span and the engine drops its whole map.

Blocklist changes come on the same channel (``NEGATIVES_CHANGED``) and go to the callbacks
registered with ``on_negatives``, which are also called whenever listening (re)starts:
what changed while nobody listened is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import structlog

from ._connection import LOST, Connection
from ._schema import NEGATIVES_CHANGED, channel

log = structlog.get_logger("cacheback.store.postgres")

_RECENT = 65_536


class PgChangeFeed:
    def __init__(self, db: Connection) -> None:
        self._db = db
        self._deletions = 0
        self._recent: deque[int] = deque(maxlen=_RECENT)
        self._seen: OrderedDict[int, None] = OrderedDict()  # ids already counted (ids never recur)
        self._unknown_through = 0  # deleted_since(count) for count below this: None
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the listening connection
        self.last_notice_at: float | None = None
        self._negatives_listeners: list[Callable[[], None]] = []

    def on_negatives(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) whenever the blocklist may have changed."""
        self._negatives_listeners.append(callback)

    def _negatives_changed(self) -> None:
        for callback in self._negatives_listeners:
            callback()

    @property
    def deletions(self) -> int:
        return self._deletions

    def deleted_since(self, count: int) -> list[int] | None:
        if count < self._unknown_through:
            return None
        missed = self._deletions - count
        if missed <= 0:
            return []
        if missed > len(self._recent):
            return None
        return list(self._recent)[-missed:]

    def record(self, ids: Iterable[int]) -> None:
        fresh = [i for i in ids if i not in self._seen]
        for i in fresh:
            self._seen[i] = None
        while len(self._seen) > _RECENT:
            self._seen.popitem(last=False)
        if fresh:
            self._recent.extend(fresh)
            self._deletions += len(fresh)

    def forget_everything(self) -> None:
        """Something was deleted that we cannot name: every earlier position is unknown."""
        self._deletions += 1
        self._unknown_through = self._deletions

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.last_notice_at = time.monotonic()
        if payload == "*":
            self.forget_everything()
            return
        if payload == NEGATIVES_CHANGED:
            self._negatives_changed()
            return
        self.record(int(part) for part in payload.split(",") if part)

    def _terminated(self, _conn: Any) -> None:
        self._conn = None
        if not self._db.healthy:
            return
        self._db.lost(ConnectionError("the listening connection closed"))

    async def start(self) -> None:
        """LISTEN (again). Whatever was deleted while not listening is unknown: forgotten."""
        await self.stop()
        conn = await self._db.listen_connection()
        try:
            await conn.add_listener(channel(self._db.schema), self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self.forget_everything()
        self._negatives_changed()

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._terminated)
            with contextlib.suppress(*LOST):
                await asyncio.wait_for(conn.close(), 2.0)

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def sync(self) -> None:
        """Catch up: a round trip on the listening connection. PostgreSQL sends pending
        notifications before it answers, so every deletion committed before this call is
        counted when it returns. Also restarts a listener that died."""
        if not self._db.healthy:
            return
        if not self.listening:
            try:
                await self.start()
            except LOST as exc:
                self._db.lost(exc)
            return
        conn = self._conn
        try:
            async with self._lock:
                await asyncio.wait_for(conn.execute("SELECT 1"), self._db.timeout)
        except (*LOST, asyncpg.PostgresError) as exc:
            self._db.lost(exc)
            return
        await asyncio.sleep(0)  # the driver hands notifications to us on the next loop turn
