"""Event-loop lag of the proxy while it processes huge prompts: ``/health`` latency.

    python loadtests/bench_loop_lag.py [--size-mb 10] [--concurrency 3] [--rounds 2]

Starts the fake provider and ``cacheback-proxy`` (as ``bench_proxy.py`` does), polls
``GET /health`` every 10 ms on its own connection, and meanwhile sends rounds of
concurrent chat requests whose user message is ``--size-mb`` MB of prose: the first
round misses (and stores), the next rounds ask the same prompts with another question
appended (the embedder reads only the start of a prompt, the guard vetoes what it cannot
read whole) and the very same prompts (exact hits). Prints the ``/health`` p50/p99/max
while the big requests were in flight. The issue's target is p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import UPSTREAM_DELAY, processes  # a sibling script, not a package

HEALTH_EVERY_S = 0.010
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


def prose(topic: str, size: int) -> str:
    sentence = (
        f"Here is a long report about {topic}: the river rose by 3 metres in April, "
        "the town council met on Tuesday, and the bridge was closed to traffic. "
    )
    return (sentence * (size // len(sentence) + 1))[:size]


def chat(text: str) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()


async def poll_health(base: str, stop: asyncio.Event, out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = await client.get("/health")
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
            await asyncio.sleep(HEALTH_EVERY_S)


async def run(base: str, size: int, concurrency: int, rounds: int) -> None:
    prompts = [prose(f"topic {k}", size) for k in range(concurrency)]
    bodies = {
        "first": [chat(p) for p in prompts],
        "changed": [chat(p + " Now translate the report into German.") for p in prompts],
        "same": [chat(p) for p in prompts],
    }
    order = ["first", *(["changed", "same"] * max(0, rounds - 1))]
    health: list[float] = []
    tiers: Counter[str] = Counter()
    big: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        warm = await client.post("/v1/chat/completions", content=chat("warm up the model"), headers=HEADERS)
        warm.raise_for_status()
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(base, stop, health))
        await asyncio.sleep(0.2)
        health.clear()  # only what was measured while big prompts were in flight

        async def one(body: bytes) -> None:
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", content=body, headers=HEADERS)
            big.append(time.perf_counter() - t0)
            tiers[f"{r.status_code} {r.headers.get('x-cacheback-tier', '-')}"] += 1

        t0 = time.perf_counter()
        for name in order:
            await asyncio.gather(*(one(b) for b in bodies[name]))
        elapsed = time.perf_counter() - t0
        stop.set()
        await poller
    ms = sorted(x * 1000 for x in health)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(
        f"{len(big)} requests of {size / 1e6:g} MB, {concurrency} at a time, in {elapsed:.1f} s "
        f"(each {statistics.median(big):.2f} s median); tiers {dict(tiers)}"
    )
    print(
        f"/health while they ran: {len(ms)} polls, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
    )
    # name value lines, for loadtests/ab.py
    print(f"health_p50_ms {statistics.median(ms):.2f}\nhealth_p99_ms {p99:.2f}\nhealth_max_ms {ms[-1]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="1 = misses only; each more adds changed + same")
    args = p.parse_args()
    args.workers, args.upstream_delay, args.gc, args.proxy_arg = 1, UPSTREAM_DELAY, False, []
    with processes(args) as (proxy, _fake):
        asyncio.run(
            run(f"http://{proxy[0]}:{proxy[1]}", int(args.size_mb * 1e6), args.concurrency, args.rounds)
        )


if __name__ == "__main__":
    main()
