"""Drop-in client benchmark: the fake provider (own process) answers after 300 ms.

    python loadtests/bench_clients.py [--delay 0.3] [--rounds 200] [--freeze-gc] [--keep-warm-ms 50]

Prints client-side latency of exact hits, semantic hits and misses for the sync and the
async client, the miss overhead over a plain SDK call to the same server (as a ratio and
in ms), and async hit throughput at concurrency 64. It asserts nothing.

``--freeze-gc``: call ``cacheback.freeze_gc()`` after the warm-up and after each client's
first call, as an application opting in would (a checkout without it runs as without).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import openai

from cacheback import AsyncCachedOpenAI, CachedOpenAI
from cacheback.adapters.embedders import MiniLMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess
from _paraphrases import semantic_hits

PARAS: list[str] = []  # distinct paraphrases served as verbatim hits (screened at start)
FREEZE: list[bool] = [False]


def maybe_freeze() -> None:
    """``cacheback.freeze_gc()`` if asked for and this checkout has it."""
    import cacheback

    freeze = getattr(cacheback, "freeze_gc", None)
    if FREEZE[0] and freeze is not None:
        freeze()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def sync_bench(base: str, emb: Any, rounds: int, misses: int) -> dict[str, float]:
    out: dict[str, float] = {}
    plain = openai.OpenAI(base_url=base, api_key="sk-bench", max_retries=0)
    with tempfile.TemporaryDirectory() as d:
        c = CachedOpenAI(base_url=base, api_key="sk-bench", max_retries=0, cache_dir=d, embedder=emb)
        call = c.chat.completions.create
        call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
        c.cache.flush()
        maybe_freeze()
        exact = [
            timed(lambda: call(model="gpt-4o", messages=msg("How do I reverse a list in Python?")))
            for _ in range(rounds)
        ]
        sem = [
            timed(lambda i=i: call(model="gpt-4o", messages=msg(PARAS[i % len(PARAS)])))
            for i in range(rounds)
        ]
        miss = [
            timed(
                lambda i=i: call(model="gpt-4o", messages=msg(f"Unrelated question number {i} about geology"))
            )
            for i in range(misses)
        ]
        base_ms = [
            timed(lambda i=i: plain.chat.completions.create(model="gpt-4o", messages=msg(f"Plain call {i}")))
            for i in range(misses)
        ]
        c.close()
    plain.close()
    out["sync_exact_p50_ms"], out["sync_exact_p99_ms"] = pct(exact, 0.5), pct(exact, 0.99)
    out["sync_semantic_p50_ms"], out["sync_semantic_p99_ms"] = pct(sem, 0.5), pct(sem, 0.99)
    out["sync_miss_p50_ms"], out["sync_plain_sdk_p50_ms"] = pct(miss, 0.5), pct(base_ms, 0.5)
    out["sync_miss_overhead_ms"] = statistics.median(miss) - statistics.median(base_ms)
    out["sync_miss_ratio"] = statistics.median(miss) / statistics.median(base_ms)
    return out


async def async_bench(base: str, emb: Any, rounds: int, misses: int) -> dict[str, float]:
    out: dict[str, float] = {}
    plain = openai.AsyncOpenAI(base_url=base, api_key="sk-bench", max_retries=0)
    with tempfile.TemporaryDirectory() as d:
        async with AsyncCachedOpenAI(
            base_url=base, api_key="sk-bench", max_retries=0, cache_dir=d, embedder=emb
        ) as c:
            call = c.chat.completions.create
            await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            await c.cache.flush()
            maybe_freeze()

            async def t(coro_fn: Any) -> float:
                t0 = time.perf_counter()
                await coro_fn()
                return (time.perf_counter() - t0) * 1000

            exact = [
                await t(lambda: call(model="gpt-4o", messages=msg("How do I reverse a list in Python?")))
                for _ in range(rounds)
            ]
            sem = [
                await t(lambda i=i: call(model="gpt-4o", messages=msg(PARAS[i % len(PARAS)])))
                for i in range(rounds)
            ]
            miss = [
                await t(
                    lambda i=i: call(
                        model="gpt-4o", messages=msg(f"Async unrelated question {i} about rivers")
                    )
                )
                for i in range(misses)
            ]
            base_ms = [
                await t(
                    lambda i=i: plain.chat.completions.create(
                        model="gpt-4o", messages=msg(f"Async plain {i}")
                    )
                )
                for i in range(misses)
            ]
            # A miss in a scope with no entries yet (another model each time): no embedding
            # on the request path, the answer is embedded when it is stored.
            fresh = [
                await t(
                    lambda i=i: call(model=f"gpt-4o-scope-{i}", messages=msg(f"Question {i} about lakes"))
                )
                for i in range(misses)
            ]
            out["async_miss_new_scope_overhead_ms"] = statistics.median(fresh) - statistics.median(base_ms)
            done = 0
            deadline = time.perf_counter() + 3.0

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
                    done += 1

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(64):
                    tg.start_soon(worker)
            out["async_hit_throughput_c64_rps"] = done / (time.perf_counter() - t0)
    await plain.close()
    out["async_exact_p50_ms"], out["async_exact_p99_ms"] = pct(exact, 0.5), pct(exact, 0.99)
    out["async_semantic_p50_ms"], out["async_semantic_p99_ms"] = pct(sem, 0.5), pct(sem, 0.99)
    out["async_miss_p50_ms"], out["async_plain_sdk_p50_ms"] = pct(miss, 0.5), pct(base_ms, 0.5)
    out["async_miss_overhead_ms"] = statistics.median(miss) - statistics.median(base_ms)
    out["async_miss_ratio"] = statistics.median(miss) / statistics.median(base_ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--misses", type=int, default=20)
    ap.add_argument("--freeze-gc", action="store_true", help="opt in to cacheback.freeze_gc()")
    ap.add_argument("--keep-warm-ms", type=float, default=None, help="embedder keep-warm (default: its own)")
    args = ap.parse_args()
    FREEZE[0] = args.freeze_gc
    with fake_in_subprocess(args.delay) as base:
        # The default settings, as users get them (unless --keep-warm-ms is given).
        warm = {} if args.keep_warm_ms is None else {"keep_warm_ms": args.keep_warm_ms}
        emb = MiniLMEmbedder(**warm)
        emb.embed(["warm up"])
        PARAS[:] = semantic_hits(
            "How can I reverse a list in Python?", "How do I reverse a list in Python?", emb, args.rounds
        )
        maybe_freeze()
        watch = sys.modules.get("gc_watch")  # under loadtests/gc_watch.py: measuring starts
        if watch is not None:
            watch.mark()
        figures = sync_bench(base, emb, args.rounds, args.misses)
        figures.update(anyio.run(async_bench, base, emb, args.rounds, args.misses))
    for k, v in figures.items():
        print(f"{k:34s} {v:10.3f}")


if __name__ == "__main__":
    main()
