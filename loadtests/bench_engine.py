"""Engine benchmark (no HTTP): hit latency, throughput with and without micro-batching,
cold open time and RSS at 100k entries.

    python loadtests/bench_engine.py [--entries 100000] [--seconds 3]

Prints figures and ratios; it asserts nothing (machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np

from cacheback import AsyncSemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.core._types import NewEntry, scope_id, text_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paraphrases import semantic_hits

TOPICS = [
    "reverse a list in Python",
    "sort a dictionary by value",
    "read a CSV file with pandas",
    "make an HTTP request in Go",
    "center a div in CSS",
    "create a virtual environment",
    "merge two git branches",
    "write a unit test in Java",
    "parse JSON in JavaScript",
    "connect to PostgreSQL from Node",
    "install Docker on Ubuntu",
    "profile a slow Python function",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(cache: AsyncSemanticCache, queries: list[str], rounds: int) -> tuple[float, float]:
    times = []
    for i in range(rounds):
        q = queries[i % len(queries)]
        t0 = time.perf_counter()
        await cache.lookup(q)
        times.append((time.perf_counter() - t0) * 1000)
    return pct(times, 0.5), pct(times, 0.99)


async def throughput(
    cache: AsyncSemanticCache, queries: list[str], concurrency: int, seconds: float
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            # A fresh suffix each time: every lookup embeds (no exact-hit shortcut).
            await cache.lookup(f"{queries[i % len(queries)]} (variant {i})")
            i += concurrency
            done += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(concurrency):
            tg.start_soon(worker, w)
    return done / (time.perf_counter() - t0)


async def hot_path(seconds: float) -> dict[str, float]:
    emb = MiniLMEmbedder(intra_op_threads=2)
    emb.embed(["warm"])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        async with AsyncSemanticCache(cache_dir=d, embedder=emb) as cache:
            for t in TOPICS:
                await cache.populate(f"How do I {t}?", f"Here is how to {t}.")
            watch = sys.modules.get("gc_watch")  # under loadtests/gc_watch.py: measuring starts
            if watch is not None:
                watch.mark()
            exact = [f"How do I {t}?" for t in TOPICS]
            para = [f"How can I {t}?" for t in TOPICS]
            out["exact_p50_ms"], out["exact_p99_ms"] = await latency(cache, exact, 2000)
            distinct = [
                v for t in TOPICS[:3] for v in semantic_hits(f"How can I {t}?", f"How do I {t}?", emb, 100)
            ]
            out["semantic_p50_ms"], out["semantic_p99_ms"] = await latency(cache, distinct, len(distinct))
            # semantic lookups bypass the exact shortcut only on first sight; force embedding:
            for c in (1, 16, 64):
                out[f"lookups_per_s_c{c}_batched"] = await throughput(cache, para, c, seconds)
            cache.engine._stages["embed_batcher"]._policy = type(
                cache.engine._stages["embed_batcher"].policy
            )(1, 0.0)  # type: ignore[attr-defined]
            for c in (1, 16, 64):
                out[f"lookups_per_s_c{c}_unbatched"] = await throughput(cache, para, c, seconds)
    out["batching_ratio_c64"] = out["lookups_per_s_c64_batched"] / out["lookups_per_s_c64_unbatched"]
    return out


def fill(path: str, n: int) -> None:
    from cacheback.adapters.storage import EmbeddedStore

    async def run() -> None:
        store = EmbeddedStore(Path(path), 384, max_entries=n + 10)
        await store.open()
        rng = np.random.default_rng(0)
        scope = scope_id("default", "")
        now = time.time()
        for start in range(0, n, 5000):
            vecs = rng.standard_normal((5000, 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            await store.entries.put(
                [
                    NewEntry(
                        scope,
                        f"question {i}",
                        text_hash(f"question {i}"),
                        f"answer {i} " * 20,
                        vecs[i - start],
                        now,
                        now + 86400,
                    )
                    for i in range(start, min(n, start + 5000))
                ]
            )
        await store.close()

    anyio.run(run)


def _vm_hwm_mb() -> float:
    # Peak RSS of this process (ru_maxrss can carry the parent's peak over fork+exec).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cold_open(path: str) -> None:
    """Runs in a fresh process: open time and peak RSS with a populated directory."""

    async def run() -> dict[str, float]:
        emb = MiniLMEmbedder(intra_op_threads=2)
        t0 = time.perf_counter()
        async with AsyncSemanticCache(cache_dir=path, embedder=emb) as cache:
            opened = time.perf_counter() - t0
            await cache.lookup("question 12345")
            stats = await cache.stats()
        return {"open_s": opened, "entries": stats["entries"]}

    res = anyio.run(run)
    res["rss_mb"] = _vm_hwm_mb()
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cold-open", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_open:
        cold_open(args.cold_open)
        return
    figures = anyio.run(hot_path, args.seconds)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fill(d, args.entries)
        figures["fill_s"] = time.perf_counter() - t0
        runs = []
        for _ in range(3):
            proc = subprocess.run(
                [sys.executable, __file__, "--cold-open", d], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        figures["cold_open_s_median"] = statistics.median(r["open_s"] for r in runs)
        figures["rss_mb_at_entries"] = max(r["rss_mb"] for r in runs)
        figures["entries"] = runs[0]["entries"]
    for k, v in figures.items():
        print(f"{k:32s} {v:10.3f}")


if __name__ == "__main__":
    main()
