"""PostgresStore: the shared store for many replicas (PostgreSQL + pgvector)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....core._errors import ConfigError
from ._blocklist import PgBlocklist, PgCounters
from ._changes import PgChangeFeed
from ._connection import LOST, Connection, elapsed_since, redact, split_url, url_ef_search
from ._entries import PgEntries, PgMaintenance

if TYPE_CHECKING:
    from ....core._store_ports import Store


class PostgresStore:
    """Implements the ``Store`` port on one PostgreSQL database shared by every replica.

    ``url``: ``postgresql://user:password@host:port/database`` (``?schema=name`` picks the
    PostgreSQL schema, ``cacheback`` by default; ``?ef_search=N`` fixes the HNSW candidates
    a search considers, which by default grow with the number of entries: 64 up to 20k,
    160 at 100k, 400 from 1M on; more finds more of the true neighbours in a large index, at a cost in
    time, docs/storage.md). ``timeout``: the budget of one lookup
    call in seconds (a slower database makes the call a miss). The schema is created and
    migrated on open. An unreachable server makes ``open`` raise StoreError; the store then
    reports itself degraded and reconnects in the background with backoff.
    """

    def __init__(
        self,
        url: str,
        dim: int,
        *,
        max_entries: int = 100_000,
        timeout: float = 0.25,
        pool_size: int = 10,
        ef_search: int | None = None,
    ) -> None:
        if dim < 1:
            raise ConfigError("dim must be at least 1")
        if max_entries < 1:
            raise ConfigError("max_entries must be at least 1")
        if timeout <= 0:
            raise ConfigError("the store timeout must be positive (seconds)")
        driver_url, schema = split_url(url)
        ef_search = url_ef_search(url) or ef_search
        self._url = url
        self._max_entries = max_entries
        self._db = Connection(
            driver_url,
            schema,
            dim,
            timeout=timeout,
            pool_size=pool_size,
            ef_search=ef_search,
            on_up=self._on_up,
        )
        self._changes = PgChangeFeed(self._db)
        self._entries = PgEntries(self._db, max_entries, self._changes.record)
        self._maintenance = PgMaintenance(self._db, self._changes.record)
        self._blocklist = PgBlocklist(self._db, self._changes)
        self._counters = PgCounters(self._db)

    @property
    def entries(self) -> PgEntries:
        return self._entries

    @property
    def maintenance(self) -> PgMaintenance:
        return self._maintenance

    @property
    def changes(self) -> PgChangeFeed:
        return self._changes

    @property
    def blocklist(self) -> PgBlocklist:
        return self._blocklist

    @property
    def counters(self) -> PgCounters:
        return self._counters

    @property
    def connection(self) -> Connection:
        return self._db

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        await self._db.open()
        if self._db.healthy:
            await self._on_up()

    async def _on_up(self) -> None:
        try:
            await self._changes.start()
        except LOST as exc:
            self._db.lost(exc)

    async def close(self) -> None:
        await self._blocklist.stop()
        await self._changes.stop()
        await self._db.close()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "postgres",
            "url": redact(self._url),
            "schema": self._db.schema,
            "dim": self._db.dim,
            "max_entries": self._max_entries,
            "timeout_s": self._db.timeout,
            "ef_search": self._entries.ef_search,
            "ef_search_auto": self._db.ef_search is None,
            "listening": self._changes.listening,
            # the negative gate searches this copy without a round trip while it is current
            "blocklist_in_memory": self._blocklist.known_count() is not None,
            "blocklist_reloads": self._blocklist.reloads,
            "degraded_for_s": elapsed_since(self._db.degraded_since),
            **self._db.describe(),
        }


if TYPE_CHECKING:
    _conforms: type[Store] = PostgresStore
