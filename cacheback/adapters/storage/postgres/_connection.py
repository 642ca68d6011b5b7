"""The connection pool, its health and reconnection with backoff.

While PostgreSQL is unreachable every call fails fast with StoreError (the engine then goes
around the cache: the request is served by the provider) instead of each request waiting
for a connect timeout; one background task probes with exponential backoff and brings the
store back when the server answers. Every call runs under a time budget: a slow database
costs a request at most that long, and the call counts as a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from ....core._errors import ConfigError, StoreError
from . import _codec
from ._schema import check_schema_name, migrate

log = structlog.get_logger("cacheback.store.postgres")

R = TypeVar("R")

_CONNECT_TIMEOUT = 5.0
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
_TX_ATTEMPTS = 3

#: Errors that mean the server or the connection is gone (as opposed to a bad statement).
LOST = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


_EF_SESSION = 64  # the session's hnsw.ef_search when the breadth adapts (each search sets its own)

#: Options of the store URL that are the store's own (never passed to the driver).
_OWN_OPTIONS = ("schema", "ef_search")


def split_url(url: str) -> tuple[str, str]:
    """(URL for the driver, schema name): ``?schema=name`` picks the PostgreSQL schema."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {parts.scheme}://…")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(query).get("schema", "cacheback")
    rest = [(key, value) for key, value in query if key not in _OWN_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), check_schema_name(schema)


def url_ef_search(url: str) -> int | None:
    """``?ef_search=N`` in the store URL: HNSW candidates per search (None: not given)."""
    raw = dict(parse_qsl(urlsplit(url).query)).get("ef_search")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ConfigError(f"ef_search={raw!r} in the store URL: a whole number from 1 to 1000")
    return int(raw)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Connection:
    """A pool to one database, migrated on first contact; healthy or degraded (and why)."""

    def __init__(
        self,
        url: str,
        schema: str,
        dim: int,
        *,
        timeout: float,
        pool_size: int,
        ef_search: int | None,
        on_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self.schema = schema
        self.dim = dim
        self.timeout = timeout  # lookups on the request path
        digest = hashlib.blake2b(f"cacheback-writes:{schema}".encode(), digest_size=8).digest()
        self.write_lock = int.from_bytes(digest, "big", signed=True)
        self.slow = max(timeout, 30.0)  # writes and maintenance, off the request path
        self._pool_size = pool_size
        self.ef_search = ef_search  # None: adapted to the number of entries (PgEntries)
        self._on_up = on_up
        self._pool: asyncpg.Pool | None = None
        self._healthy = False
        self.reason: str | None = "not opened"
        self.degraded_since: float | None = None
        self.outages = 0
        self.timeouts = 0
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate and pool. An unreachable server raises StoreError, and the store
        stays degraded while it keeps trying in the background (an owner that reopens
        stores itself closes it first, which stops that)."""
        self._closed = False
        try:
            await self._connect()
        except ConfigError:
            raise
        except (*LOST, asyncpg.PostgresError) as exc:
            self._lost(exc)
            raise StoreError(f"PostgreSQL unavailable: {exc}") from exc

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=_CONNECT_TIMEOUT)
        try:
            await migrate(conn, self.schema, self.dim)
        finally:
            await conn.close()
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,  # no floor to restore while the server is away
                max_size=self._pool_size,
                init=_codec.register,
                timeout=_CONNECT_TIMEOUT,
                server_settings=self.server_settings(),
            )
        else:
            await self._pool.expire_connections()  # drop sockets to the server that went away
        self._up()

    def server_settings(self) -> dict[str, str]:
        return {
            "search_path": f"{self.schema}, public",
            # A fixed breadth; searches also pass theirs to the search function.
            "hnsw.ef_search": str(self.ef_search or _EF_SESSION),
            # Filtered (per-scope) HNSW search keeps walking the graph until it has enough
            # rows of the scope, instead of returning what the first ef_search candidates hold.
            "hnsw.iterative_scan": "relaxed_order",
            "application_name": "cacheback",
        }

    def _up(self) -> None:
        if not self._healthy and self.degraded_since is not None:
            log.info("store.postgres_recovered", after_s=round(time.monotonic() - self.degraded_since, 2))
        self._healthy = True
        self.reason = None
        self.degraded_since = None

    def _lost(self, exc: BaseException) -> None:
        if self._healthy or self.degraded_since is None:
            self.outages += 1
            self.degraded_since = time.monotonic()
            log.warning("store.postgres_unavailable", error=repr(exc))
        self._healthy = False
        self.reason = f"{type(exc).__name__}: {exc}"[:300]
        if self._probe is None or self._probe.done():
            if not self._closed:
                self._probe = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._closed and not self._healthy:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (*LOST, asyncpg.PostgresError, ConfigError) as exc:
                self.reason = f"{type(exc).__name__}: {exc}"[:300]
                delay = min(_BACKOFF_MAX, delay * 2)
                continue
            if self._on_up is not None:
                try:
                    await self._on_up()
                except (*LOST, asyncpg.PostgresError) as exc:
                    log.warning("store.postgres_listener_failed", error=repr(exc))

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        pool, self._pool = self._pool, None
        self._healthy = False
        self.reason = "closed"
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, *LOST):
                pool.terminate()

    # -- calls -----------------------------------------------------------------------------

    async def run(self, fn: Callable[[Any], Awaitable[R]], *, budget: float | None = None) -> R:
        """``fn(connection)`` within the budget; StoreError when down, slow or failing."""
        pool = self._pool
        if pool is None or not self._healthy:
            raise StoreError(f"PostgreSQL unavailable ({self.reason})")
        budget = self.timeout if budget is None else budget
        try:
            async with asyncio.timeout(budget):
                async with pool.acquire() as conn:
                    return await fn(conn)
        except TimeoutError as exc:
            self.timeouts += 1
            raise StoreError(f"PostgreSQL did not answer within {budget:g} s") from exc
        except asyncpg.PostgresError as exc:
            if isinstance(exc, LOST):
                self._lost(exc)
            raise StoreError(f"PostgreSQL: {exc}") from exc
        except LOST as exc:
            self._lost(exc)
            raise StoreError(f"PostgreSQL unavailable: {exc}") from exc

    async def transaction(self, fn: Callable[[Any], Awaitable[R]], *, budget: float | None = None) -> R:
        """``fn`` in one transaction that adds or deletes entries.

        Such transactions take one advisory lock per schema first: they all update the
        entry count and may wait on each other's rows (the same question answered by two
        replicas at once), and one lock taken up front leaves no order to deadlock in.
        Retried anyway if PostgreSQL aborts one to break a deadlock or a serialization
        conflict."""

        async def in_tx(conn: Any) -> R:
            for attempt in range(_TX_ATTEMPTS):
                try:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", self.write_lock)
                        return await fn(conn)
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                    if attempt == _TX_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.01 * (attempt + 1))
            raise AssertionError("unreachable")

        return await self.run(in_tx, budget=budget)

    async def listen_connection(self) -> Any:
        """A dedicated connection (for LISTEN), outside the pool."""
        return await asyncpg.connect(
            self.url, timeout=_CONNECT_TIMEOUT, server_settings={"application_name": "cacheback-listen"}
        )

    def lost(self, exc: BaseException) -> None:
        """Another part saw the server go away."""
        self._lost(exc)

    def describe(self) -> dict[str, Any]:
        reason = None if self._healthy else self.reason
        return {
            "health": {"degraded": not self._healthy, "reason": reason},
            "degraded": not self._healthy,  # also flat, where stats and /health look first
            "reason": reason,
            "outages": self.outages,
            "timeouts": self.timeouts,
        }


def elapsed_since(t: float | None) -> float | None:
    return None if t is None else round(time.monotonic() - t, 3)
