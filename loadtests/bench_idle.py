"""The idle penalty and the keep-warm that removes it (issue: lower the model's cost per request).

    python loadtests/bench_idle.py [--rounds 40] [--idle-ms 300] [--interval-ms 50]

One embedder, one engine, keep-warm switched on and off in alternating rounds (machines
drift, so only ratios within one run mean anything). Each round: wait ``--idle-ms``
without traffic, time one semantic-hit lookup (a distinct paraphrase, so it embeds),
then time one more right after it (warm). Then the same for a bare embedding. Prints
min / median / max per mode, the after-idle / warm ratios, and what keep-warm costs:
CPU while recently active and idle, CPU after its idle limit (parked), and lookups/s at
concurrency 16 with it on and off. Asserts nothing (machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from cacheback import AsyncSemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paraphrases import semantic_hits

TOPICS = ["reverse a list in Python", "sort a dictionary by value", "merge two git branches"]


def summary(values: list[float]) -> str:
    return f"min {min(values):6.2f}  median {statistics.median(values):6.2f}  max {max(values):6.2f} ms"


async def timed_lookup(cache: AsyncSemanticCache, query: str) -> float:
    t0 = time.perf_counter()
    hit = await cache.lookup(query)
    elapsed = (time.perf_counter() - t0) * 1000
    if hit is None:
        raise SystemExit(f"expected a semantic hit for {query!r}")
    return elapsed


def cpu_fraction(seconds: float) -> float:
    """Process CPU time over ``seconds`` of wall time with no traffic, as a fraction of one core."""
    c0, w0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.perf_counter() - w0)


async def throughput(cache: AsyncSemanticCache, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            await cache.lookup(f"How can I {TOPICS[i % len(TOPICS)]}? (load {i})")
            i += concurrency
            done += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(concurrency):
            tg.start_soon(worker, w)
    return done / (time.perf_counter() - t0)


async def main(rounds: int, idle_ms: float, interval_ms: float, warm_for_s: float) -> None:
    emb = MiniLMEmbedder(keep_warm_ms=interval_ms, keep_warm_for_s=warm_for_s)
    emb.load()
    kw = emb.keep_warm
    assert kw is not None
    with tempfile.TemporaryDirectory() as d:
        async with AsyncSemanticCache(cache_dir=d, embedder=emb) as cache:
            for t in TOPICS:
                await cache.populate(f"How do I {t}?", f"Here is how to {t}.")
            queries = [
                v for t in TOPICS for v in semantic_hits(f"How can I {t}?", f"How do I {t}?", emb, 4 * rounds)
            ]
            if len(queries) < 4 * rounds:
                raise SystemExit(f"only {len(queries)} distinct semantic hits; lower --rounds")
            texts = [f"Tell me how to {TOPICS[i % 3]} (idle probe {i})" for i in range(4 * rounds)]
            hit: dict[str, list[float]] = {"on idle": [], "on warm": [], "off idle": [], "off warm": []}
            bare: dict[str, list[float]] = {"on idle": [], "off idle": [], "warm": []}
            q = iter(queries)
            t = iter(texts)
            for _ in range(rounds):
                for mode in ("on", "off"):
                    kw.enabled = mode == "on"
                    await anyio.sleep(idle_ms / 1000)
                    hit[f"{mode} idle"].append(await timed_lookup(cache, next(q)))
                    hit[f"{mode} warm"].append(await timed_lookup(cache, next(q)))
                    await anyio.sleep(idle_ms / 1000)
                    t0 = time.perf_counter()
                    await anyio.to_thread.run_sync(emb.embed, [next(t)])
                    bare[f"{mode} idle"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await anyio.to_thread.run_sync(emb.embed, [next(t)])
                bare["warm"].append((time.perf_counter() - t0) * 1000)
            print(f"semantic-hit lookup, {rounds} alternating rounds, {idle_ms:.0f} ms idle before each:")
            for k, v in hit.items():
                print(f"  keep-warm {k:9s} {summary(v)}")
            for mode in ("on", "off"):
                ratio = statistics.median(hit[f"{mode} idle"]) / statistics.median(hit[f"{mode} warm"])
                print(f"  keep-warm {mode}: after-idle / warm p50 = {ratio:.2f}x")
            print("bare embedding (one query, worker thread):")
            for k, v in bare.items():
                print(f"  {k:9s} {summary(v)}")

            kw.enabled = True
            await anyio.to_thread.run_sync(emb.embed, ["activity"])
            ticks0 = kw.ticks
            active = await anyio.to_thread.run_sync(cpu_fraction, 2.0)
            print(
                f"CPU while recently active but idle: {100 * active:.1f} % of one core"
                f" ({(kw.ticks - ticks0) / 2.0:.0f} keep-warm inferences/s)"
            )
            await anyio.sleep(max(0.0, warm_for_s - 2.0) + 0.5)
            ticks0 = kw.ticks
            parked = await anyio.to_thread.run_sync(cpu_fraction, 2.0)
            print(
                f"CPU after the {warm_for_s:.0f} s idle limit: {100 * parked:.2f} % of one core"
                f" ({kw.ticks - ticks0} inferences, parked={kw.parked})"
            )
            for mode in ("on", "off", "on", "off"):
                kw.enabled = mode == "on"
                ticks0 = kw.ticks
                rate = await throughput(cache, 3.0, 16)
                ticks = kw.ticks - ticks0
                print(f"lookups/s at concurrency 16, keep-warm {mode}: {rate:.0f} ({ticks} ticks)")
    emb.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--idle-ms", type=float, default=300.0)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--warm-for-s", type=float, default=4.0)
    args = parser.parse_args()
    anyio.run(main, args.rounds, args.idle_ms, args.interval_ms, args.warm_for_s)
