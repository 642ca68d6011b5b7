"""Helpers for the embedded-store tests: vectors, entries, raw SQLite access and a worker process.

Imported explicitly by the store test modules (``from _store_helpers import ...``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import numpy as np
import pytest
import structlog
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from cacheback.adapters.storage import EmbeddedStore
from cacheback.core._types import NewEntry, Vector, text_hash

DIM = 16
NOW = 1_700_000_000.0
KINDS = ("hnsw", "numpy")
# exact_scan_limit values that force each search path: 0 = always the index, huge = always
# the exact SQLite scan of the scope.
PATHS = {"index": 0, "exact": 10**9}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> Vector:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def near(v: Vector, rng: np.random.Generator, eps: float = 0.05) -> Vector:
    """A unit vector close to ``v`` (cosine about 1 - eps²/2 per dimension of noise)."""
    w = v + eps * rng.standard_normal(v.shape).astype(np.float32)
    out: Vector = (w / np.linalg.norm(w)).astype(np.float32)
    return out


def entry(
    scope: str,
    query: str,
    vector: Vector | None,
    *,
    now: float = NOW,
    ttl: float = 3600.0,
    answer: str | None = None,
    payload: bytes | None = None,
    metadata: dict[str, Any] | None = None,
) -> NewEntry:
    return NewEntry(
        scope=scope,
        query=query,
        query_hash=text_hash(query),
        answer=answer if answer is not None else f"answer to {query}",
        vector=vector,
        created_at=now,
        expires_at=now + ttl,
        payload=payload,
        metadata=metadata or {},
    )


@asynccontextmanager
async def opened(path: Path, dim: int = DIM, **kwargs: Any) -> AsyncIterator[EmbeddedStore]:
    kwargs.setdefault("max_entries", 100_000)
    store = EmbeddedStore(path, dim, **kwargs)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def raw_sql(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database file directly (as a maintenance script would)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def corrupt_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.corrupt-*"))


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog's capture_logs at every level (cacheback's loggers are stdlib ones, quiet
    below warning by default)."""
    root = logging.getLogger("cacheback")
    saved = root.level
    root.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        root.setLevel(saved)


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in logs if e.get("event") == name]


# -- a second process holding its own store open ---------------------------------------------

WORKER_SOURCE = r"""
import json, sys
import anyio, numpy as np

from cacheback._logging import log_to_stderr

log_to_stderr("debug")

from cacheback.adapters.storage import EmbeddedStore
from cacheback.core._types import NewEntry

def entry_out(e):
    return {"id": e.id, "scope": e.scope, "query": e.query, "answer": e.answer}

async def main():
    store = None
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            if op == "open":
                store = EmbeddedStore(cmd.pop("path"), cmd.pop("dim"), **cmd)
                await store.open()
                result = store.describe()
            elif op == "put":
                result = await store.entries.put([
                    NewEntry(e["scope"], e["query"], e["query_hash"], e["answer"],
                             None if e["vector"] is None else np.array(e["vector"], np.float32),
                             e["created_at"], e["expires_at"])
                    for e in cmd["entries"]])
            elif op == "search":
                hits = await store.entries.search(cmd["scope"], np.array(cmd["vector"], np.float32),
                                          cmd["k"], cmd["now"])
                result = [[entry_out(e), s] for e, s in hits]
            elif op == "delete":
                result = await store.entries.delete(cmd["ids"])
            elif op == "clear":
                result = await store.maintenance.clear(cmd.get("prefix"))
            elif op == "count":
                result = await store.maintenance.count()
            elif op == "evict_expired":
                result = await store.maintenance.evict_expired(cmd["now"])
            elif op == "negative_search":
                hits = await store.blocklist.search(np.array(cmd["vector"], np.float32), cmd["k"])
                result = [[e.id, s] for e, s in hits]
            elif op == "describe":
                result = store.describe()
            elif op == "close":
                await store.close()
                result = None
            else:
                raise ValueError(op)
            reply = {"ok": True, "result": result}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if op == "close":
            break

anyio.run(main)
"""


def entry_json(e: NewEntry) -> dict[str, Any]:
    return {
        "scope": e.scope,
        "query": e.query,
        "query_hash": e.query_hash,
        "answer": e.answer,
        "vector": None if e.vector is None else [float(x) for x in e.vector],
        "created_at": e.created_at,
        "expires_at": e.expires_at,
    }


class Worker:
    """Drives a store in another Python process over JSON lines on stdin/stdout."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        assert proc.stdout is not None
        self._out = BufferedByteReceiveStream(proc.stdout)

    async def call(self, op: str, **args: Any) -> Any:
        assert self._proc.stdin is not None
        with anyio.fail_after(60):
            await self._proc.stdin.send((json.dumps({"op": op, **args}) + "\n").encode())
            line = await self._out.receive_until(b"\n", 1 << 24)
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"worker {op} failed: {reply['error']}")
        return reply["result"]

    async def search(self, scope: str, vector: Vector, k: int, now: float = NOW) -> list[int]:
        hits = await self.call("search", scope=scope, vector=vector.tolist(), k=k, now=now)
        return [h[0]["id"] for h in hits]


@asynccontextmanager
async def worker(stderr: IO[bytes]) -> AsyncIterator[Worker]:
    async with await anyio.open_process([sys.executable, "-c", WORKER_SOURCE], stderr=stderr) as proc:
        try:
            yield Worker(proc)
        finally:
            if proc.returncode is None:
                assert proc.stdin is not None
                await proc.stdin.aclose()
                with anyio.move_on_after(30):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
