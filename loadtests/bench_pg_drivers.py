"""asyncpg vs psycopg 3 (async, with its pool) on the two queries a lookup makes.

Same server, same table, same statements: an exact lookup by (scope, hash) and a scoped
top-k cosine search through the HNSW index. Sequential round trips (latency) and 64
concurrent callers over a pool of 8 (throughput). Starts its own throwaway PostgreSQL.

    python loadtests/bench_pg_drivers.py --rows 5000 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DIM = 384
SCOPES = 20


def _vec_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v.tolist()) + "]"


async def _setup(url: str, rows: int) -> None:
    import asyncpg
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(url)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(conn)
    await conn.execute("DROP TABLE IF EXISTS bench")
    await conn.execute(
        f"CREATE TABLE bench (id bigserial PRIMARY KEY, scope text, h text, answer text, v vector({DIM}),"
        " UNIQUE (scope, h))"
    )
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((rows, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    await conn.copy_records_to_table(
        "bench",
        records=[(f"s{i % SCOPES}", f"h{i}", "answer " * 40, vecs[i]) for i in range(rows)],
        columns=["scope", "h", "answer", "v"],
    )
    await conn.execute("CREATE INDEX ON bench USING hnsw (v vector_cosine_ops)")
    await conn.execute("ANALYZE bench")
    await conn.close()


EXACT = "SELECT id, answer FROM bench WHERE scope = $1 AND h = $2"
SEARCH = "SELECT id, answer, v <=> $1 AS d FROM bench WHERE scope = $2 ORDER BY v <=> $1 LIMIT 5"


async def _time(
    fn: Callable[[int], Awaitable[None]], seconds: float, concurrency: int
) -> tuple[list[float], float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    n = 0

    async def worker(w: int) -> None:
        nonlocal n
        i = w
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await fn(i)
            lat.append(time.perf_counter() - t)
            i += concurrency
            n += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return lat, n / (time.perf_counter() - t0)


def _fmt(name: str, lat: list[float], rate: float) -> str:
    ms = sorted(x * 1000 for x in lat)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:34s} p50 {statistics.median(ms):6.3f} ms  p99 {p99:6.3f} ms  {rate:8.0f}/s"


async def _asyncpg(url: str, rows: int, seconds: float, queries: np.ndarray) -> list[str]:
    import asyncpg
    from pgvector.asyncpg import register_vector

    pool = await asyncpg.create_pool(
        url, min_size=8, max_size=8, init=register_vector, server_settings={"hnsw.ef_search": "64"}
    )
    out = []

    async def exact(i: int) -> None:
        await pool.fetchrow(EXACT, f"s{i % SCOPES}", f"h{i % rows}")

    async def search(i: int) -> None:
        await pool.fetch(SEARCH, queries[i % len(queries)], f"s{i % SCOPES}")

    for name, fn in (("exact", exact), ("search", search)):
        out.append(_fmt(f"asyncpg {name} c=1", *await _time(fn, seconds, 1)))
        out.append(_fmt(f"asyncpg {name} c=64", *await _time(fn, seconds, 64)))
    await pool.close()
    return out


async def _psycopg(url: str, rows: int, seconds: float, queries: np.ndarray) -> list[str]:
    from pgvector.psycopg import register_vector_async
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    async def configure(conn: AsyncConnection) -> None:
        await register_vector_async(conn)
        await conn.set_autocommit(True)

    pool = AsyncConnectionPool(url, min_size=8, max_size=8, configure=configure, open=False)
    await pool.open(wait=True)
    ex = EXACT.replace("$1", "%s").replace("$2", "%s")
    se = "SELECT id, answer, v <=> %(q)s AS d FROM bench WHERE scope = %(s)s ORDER BY v <=> %(q)s LIMIT 5"
    out = []

    async def exact(i: int) -> None:
        async with pool.connection() as conn:
            cur = await conn.execute(ex, (f"s{i % SCOPES}", f"h{i % rows}"), prepare=True)
            await cur.fetchone()

    async def search(i: int) -> None:
        async with pool.connection() as conn:
            params = {"q": queries[i % len(queries)], "s": f"s{i % SCOPES}"}
            cur = await conn.execute(se, params, prepare=True)
            await cur.fetchall()

    for name, fn in (("exact", exact), ("search", search)):
        out.append(_fmt(f"psycopg {name} c=1", *await _time(fn, seconds, 1)))
        out.append(_fmt(f"psycopg {name} c=64", *await _time(fn, seconds, 64)))
    await pool.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    from tests._pg_server import PgServer

    server = PgServer(Path(tempfile.mkdtemp(prefix="cb-bench-pg-")))
    try:
        url = server.url("postgres")
        asyncio.run(_setup(url, args.rows))
        rng = np.random.default_rng(2)
        queries = rng.standard_normal((256, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for line in asyncio.run(_asyncpg(url, args.rows, args.seconds, queries)):
            print(line)
        for line in asyncio.run(_psycopg(url, args.rows, args.seconds, queries)):
            print(line)
    finally:
        server.close()


if __name__ == "__main__":
    main()
