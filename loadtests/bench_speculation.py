"""Speculative upstream calls (``speculative_upstream``): miss overhead off vs on, side by side.

    python loadtests/bench_speculation.py [--data PATH/gptcache_mock_data.json] [--misses 60]

Two ``AsyncCachedOpenAI`` clients, speculation off and on, each with a cache holding the
``origin`` questions of the first half of the data (seeded through a second fake provider
that answers at once). Misses: paraphrases of the *second* half (their originals are not
stored: a realistic stream of new questions), timed alternately through the two clients
and a plain SDK client against a fake answering after ``--delay`` seconds; the overhead is
the cached client's time less the plain call's of the same round. Hits: paraphrases of the
first half through both clients, to count the speculative calls a hit took back and to
check that both clients answered the same tiers. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import openai

from cacheback import AsyncCachedOpenAI
from cacheback.adapters.embedders import MiniLMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"


def msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} / {statistics.median(values):7.2f} / {max(values):7.2f}"


async def seed(base: str, cache_dir: str, emb: Any, questions: list[str]) -> None:
    args = {"base_url": base, "api_key": "sk-bench", "max_retries": 0, "embedder": emb}
    async with AsyncCachedOpenAI(cache_dir=cache_dir, **args) as c:
        for q in questions:
            await c.chat.completions.create(model="gpt-4o", messages=msg(q))
        await c.cache.flush()


async def run(args: argparse.Namespace, quick: str, slow: str, emb: Any) -> None:
    pairs = json.loads(args.data.read_text())
    half = len(pairs) // 2
    stored = [p["origin"] for p in pairs[:half]]
    new_questions = [p["similar"] for p in pairs[half:]][: args.misses]
    rewordings = [p["similar"] for p in pairs[:half]][: args.hits]
    with tempfile.TemporaryDirectory() as d_off, tempfile.TemporaryDirectory() as d_on:
        t0 = time.perf_counter()
        await seed(quick, d_off, emb, stored)
        await seed(quick, d_on, emb, stored)
        print(f"seeded {len(stored)} questions into each cache in {time.perf_counter() - t0:.1f} s")
        plain = openai.AsyncOpenAI(base_url=slow, api_key="sk-bench", max_retries=0)
        common = {"base_url": slow, "api_key": "sk-bench", "max_retries": 0, "embedder": emb}
        async with (
            AsyncCachedOpenAI(cache_dir=d_off, **common) as off,
            AsyncCachedOpenAI(cache_dir=d_on, speculative_upstream=True, **common) as on,
        ):
            await anyio.sleep(1.0)  # the stored questions are taught to the predictor meanwhile
            overhead: dict[str, list[float]] = {"off": [], "on": []}
            speculated: dict[str, list[float]] = {"off": [], "on": []}  # rounds sent early (on)
            kept: dict[str, list[float]] = {"off": [], "on": []}  # the others
            tiers: dict[str, Counter[str]] = {"off": Counter(), "on": Counter()}

            async def timed(client: Any, q: str) -> tuple[float, str]:
                t = time.perf_counter()
                r = await client.chat.completions.create(model="gpt-4o", messages=msg(q))
                info = getattr(r, "cacheback", None)
                return (time.perf_counter() - t) * 1000, info.tier if info is not None else "plain"

            for i, q in enumerate(new_questions):
                order = [("off", off), ("on", on)] if i % 2 == 0 else [("on", on), ("off", off)]
                base_ms, _ = await timed(plain, f"plain call {i}")
                round_ms: dict[str, float] = {}
                round_tiers: dict[str, str] = {}
                before = (await on.cache.stats())["speculation"]["sent"]
                for name, client in order:
                    ms, round_tiers[name] = await timed(client, q)
                    round_ms[name] = ms - base_ms
                    tiers[name][round_tiers[name]] += 1
                sent = (await on.cache.stats())["speculation"]["sent"] > before
                if set(round_tiers.values()) == {"upstream"}:  # a miss both ways: comparable
                    for name, ms in round_ms.items():
                        overhead[name].append(ms)
                    (speculated if sent else kept)["on"].append(round_ms["on"])
                    (speculated if sent else kept)["off"].append(round_ms["off"])
                    if args.verbose:
                        mark = "sent early" if sent else "          "
                        off_ms, on_ms = round_ms["off"], round_ms["on"]
                        print(f"  {i:3d} off {off_ms:7.2f} on {on_ms:7.2f} ms {mark} {q[:50]}")
            clients = (("off", off), ("on", on))
            miss_stats = {name: (await c.cache.stats())["speculation"] for name, c in clients}
            hit_tiers: dict[str, list[str]] = {"off": [], "on": []}
            for q in rewordings:
                for name, client in (("off", off), ("on", on)):
                    hit_tiers[name].append((await timed(client, q))[1])
            final = {name: (await c.cache.stats())["speculation"] for name, c in clients}
        await plain.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"misses: {len(new_questions)} new questions, {len(stored)} stored; load average {load}")
    print(f"  overhead over the plain call of the same round; rounds missed both ways: {len(overhead['on'])}")
    for name in ("off", "on"):
        print(f"  speculation {name:3s}: overhead min/median/max {spread(overhead[name])} ms")
        print(f"    tiers {dict(tiers[name])}")
    for label, rounds in (("sent early", speculated), ("not sent early", kept)):
        if rounds["on"]:
            off_ms, on_ms = statistics.median(rounds["off"]), statistics.median(rounds["on"])
            n = len(rounds['on'])
            print(f"  rounds {label} ({n}): median overhead off {off_ms:.2f} ms, on {on_ms:.2f} ms")
    sent = miss_stats["on"]["sent"]
    share = 100 * sent / max(1, len(new_questions))
    print(f"  speculated misses: {sent} of {len(new_questions)} ({share:.1f} %)")
    same = sum(a == b for a, b in zip(hit_tiers["off"], hit_tiers["on"], strict=True))
    hits_on = sum(t in ("verbatim", "exact") for t in hit_tiers["on"])
    taken_back = final["on"]["taken_back"] - miss_stats["on"]["taken_back"]
    print(f"rewordings of stored questions: {len(rewordings)}; same tier off/on: {same}; hits {hits_on}")
    print(
        f"  speculative calls taken back by a hit: {taken_back} "
        f"({100 * taken_back / max(1, hits_on):.1f} % of the hits); sent for rewordings: "
        f"{final['on']['sent'] - sent}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=EVAL / "gptcache_mock_data.json")
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--misses", type=int, default=60)
    ap.add_argument("--hits", type=int, default=200)
    ap.add_argument("--verbose", action="store_true", help="print each miss round")
    args = ap.parse_args()
    emb = MiniLMEmbedder()
    emb.embed(["warm up"])
    with fake_in_subprocess(0.0) as quick, fake_in_subprocess(args.delay) as slow:
        anyio.run(run, args, quick, slow, emb)


if __name__ == "__main__":
    main()
