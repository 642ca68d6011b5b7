"""An exact hit next to its floor: the same SDK call answered at once by an in-process mock.

    python loadtests/bench_exact_floor.py [--rounds 10] [--calls 200] [--profile 0]

The floor is the plain SDK (``openai.AsyncOpenAI`` / ``openai.OpenAI``) with an
``httpx2.MockTransport`` that returns, without any I/O, the very body the fake provider
sent for the question: what is left is the SDK's own work (building the request, its
headers and JSON body, the client's send path, parsing the response into a
``ChatCompletion``). The cached client (``AsyncCachedOpenAI`` / ``CachedOpenAI``) answers
the same question as an exact hit from memory. Blocks of ``--calls`` calls of each kind
alternate ``--rounds`` times in one process, so both see the same machine; the p50 and p99
are over all their calls. ``--profile N``: then N more async calls of each kind under
cProfile, for the Python function calls per call (a count of the work that the machine's
load does not change) and, on stderr, the functions with the most own time in an exact
hit. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import openai

from cacheback import AsyncCachedOpenAI, CachedOpenAI
from cacheback.adapters.embedders import MiniLMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess

QUESTION = [{"role": "user", "content": "How do I reverse a list in Python?"}]
MODEL = "gpt-4o"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def canned_body(base: str) -> bytes:
    """What the fake provider answers to the question (one real call)."""
    with openai.OpenAI(base_url=base, api_key="sk-bench", max_retries=0) as plain:
        raw = plain.chat.completions.with_raw_response.create(model=MODEL, messages=QUESTION)
        return raw.http_response.content


def mock_handler(body: bytes) -> Callable[[httpx2.Request], httpx2.Response]:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    return answer


async def timed_async(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def timed_sync(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def async_side(base: str, body: bytes, emb: Any, args: argparse.Namespace) -> dict[str, float]:
    mock = httpx2.AsyncClient(transport=httpx2.MockTransport(mock_handler(body)))
    floor_client = openai.AsyncOpenAI(
        base_url="http://mock.invalid/v1", api_key="sk-bench", max_retries=0, http_client=mock
    )
    floor: list[float] = []
    hit: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        async with AsyncCachedOpenAI(
            base_url=base, api_key="sk-bench", max_retries=0, cache_dir=d, embedder=emb
        ) as cached:
            await cached.chat.completions.create(model=MODEL, messages=QUESTION)  # the miss
            await cached.cache.flush()

            def floor_call() -> Awaitable[Any]:
                return floor_client.chat.completions.create(model=MODEL, messages=QUESTION)

            def hit_call() -> Awaitable[Any]:
                return cached.chat.completions.create(model=MODEL, messages=QUESTION)

            first = await hit_call()
            assert first.cacheback.tier == "exact", first.cacheback
            await timed_async(floor_call, 20)  # warm both paths
            await timed_async(hit_call, 20)
            for i in range(args.rounds):
                pair = (floor_call, hit_call) if i % 2 == 0 else (hit_call, floor_call)
                for fn in pair:
                    (floor if fn is floor_call else hit).extend(await timed_async(fn, args.calls))
            calls: dict[str, float] = {}
            if args.profile:
                for name, fn in (("sdk_mock", floor_call), ("exact", hit_call)):
                    prof = cProfile.Profile()
                    prof.enable()
                    for _ in range(args.profile):
                        await fn()
                    prof.disable()
                    stats = pstats.Stats(prof, stream=io.StringIO())
                    # Python function calls per call: the work, whatever the machine's load.
                    total: int = stats.total_calls  # type: ignore[attr-defined]
                    calls[f"async_{name}_py_calls_per_call"] = total / args.profile
                    if name == "exact":
                        text = io.StringIO()
                        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
                        print(text.getvalue(), file=sys.stderr)
    await floor_client.close()
    return {
        "async_sdk_mock_p50_ms": pct(floor, 0.5),
        "async_sdk_mock_p99_ms": pct(floor, 0.99),
        "async_exact_p50_ms": pct(hit, 0.5),
        "async_exact_p99_ms": pct(hit, 0.99),
        "async_exact_over_mock_p50": pct(hit, 0.5) / pct(floor, 0.5),
        **calls,
    }


def sync_side(base: str, body: bytes, emb: Any, args: argparse.Namespace) -> dict[str, float]:
    mock = httpx2.Client(transport=httpx2.MockTransport(mock_handler(body)))
    floor_client = openai.OpenAI(
        base_url="http://mock.invalid/v1", api_key="sk-bench", max_retries=0, http_client=mock
    )
    floor: list[float] = []
    hit: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        cached = CachedOpenAI(base_url=base, api_key="sk-bench", max_retries=0, cache_dir=d, embedder=emb)
        cached.chat.completions.create(model=MODEL, messages=QUESTION)
        cached.cache.flush()

        def floor_call() -> Any:
            return floor_client.chat.completions.create(model=MODEL, messages=QUESTION)

        def hit_call() -> Any:
            return cached.chat.completions.create(model=MODEL, messages=QUESTION)

        timed_sync(floor_call, 20)
        timed_sync(hit_call, 20)
        for i in range(args.rounds):
            pair = (floor_call, hit_call) if i % 2 == 0 else (hit_call, floor_call)
            for fn in pair:
                (floor if fn is floor_call else hit).extend(timed_sync(fn, args.calls))
        cached.close()
    floor_client.close()
    return {
        "sync_sdk_mock_p50_ms": pct(floor, 0.5),
        "sync_sdk_mock_p99_ms": pct(floor, 0.99),
        "sync_exact_p50_ms": pct(hit, 0.5),
        "sync_exact_p99_ms": pct(hit, 0.99),
        "sync_exact_over_mock_p50": pct(hit, 0.5) / pct(floor, 0.5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks of each kind")
    ap.add_argument("--calls", type=int, default=200, help="calls per block")
    ap.add_argument("--profile", type=int, default=0, help="then profile this many async exact hits")
    args = ap.parse_args()
    with fake_in_subprocess(0.0) as base:
        body = canned_body(base)
        emb = MiniLMEmbedder()  # the default embedder, as bench_clients.py uses it
        emb.embed(["warm up"])
        figures = sync_side(base, body, emb, args)
        figures.update(asyncio.run(async_side(base, body, emb, args)))
    for k, v in figures.items():
        print(f"{k:34s} {v:10.3f}")


if __name__ == "__main__":
    main()
