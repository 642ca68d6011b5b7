"""Where an async miss spends its time, from the engine's own OpenTelemetry spans.

    python loadtests/trace_miss.py [--misses 40] [--delay 0.3] [--speculative]

The fake provider (own process) answers after --delay seconds, so every miss starts on a
CPU that has just waited, as in bench_clients.py. Spans go to an in-memory exporter; the
SDK's HTTP client marks when the request leaves and when the answer is back (httpx event
hooks). Prints medians, in ms, of every step of a miss through AsyncCachedOpenAI and of
the same steps of a plain AsyncOpenAI call. ``--speculative`` turns ``speculative_upstream``
on: a miss's request then leaves before its lookup ends, and the timeline adds when it
left and how long the caller waited after the answer came back. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cacheback import AsyncCachedOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess

EXPORTER = InMemorySpanExporter()

#: Unrelated questions (--speculative): each must be a clear miss among the ones before it.
DISTINCT = [
    "How do volcanoes form?", "Best way to knead sourdough bread", "Explain TCP slow start",
    "Who painted the Sistine Chapel ceiling?", "How much water should a cactus get in winter?",
    "Translate 'good morning' into Japanese", "What causes the northern lights?",
    "Write a haiku about autumn leaves", "How do I change a bicycle tire?",
    "Why is the sky blue?", "Summarize the plot of Hamlet", "What is a Roth IRA?",
    "How many moons does Jupiter have?", "Recipe for vegan chocolate cake",
    "How do vaccines train the immune system?", "Difference between a crocodile and an alligator",
    "How to remove a red wine stain from carpet", "What is the capital of Mongolia?",
    "Explain quantum entanglement simply", "Tips for a job interview at a startup",
    "How do noise cancelling headphones work?", "When did the Berlin Wall fall?",
    "What is the offside rule in football?", "How to grow tomatoes on a balcony",
    "Explain compound interest with an example", "Why do cats purr?",
    "How does a jet engine produce thrust?", "Plan a three day trip to Lisbon",
    "What are the symptoms of dehydration?", "How do I tie a bowline knot?",
    "Explain the rules of chess castling", "What is photosynthesis?",
    "How to negotiate a higher salary", "Why do onions make you cry?",
    "What did the Magna Carta establish?", "How do I descale a coffee machine?",
    "Explain how a bill becomes law in the UK", "What is the speed of sound in water?",
    "Suggest names for a golden retriever puppy", "How does GPS know where I am?",
]


def http_client(marks: dict[str, float]) -> Any:
    async def sent(request: Any) -> None:
        marks["sent"] = time.time()

    async def answered(response: Any) -> None:
        marks["answered"] = time.time()

    return openai.DefaultAsyncHttpxClient(event_hooks={"request": [sent], "response": [answered]})


def steps(call_start: float, call_end: float, marks: dict[str, float]) -> dict[str, float]:
    """The miss's timeline: named gaps and stage durations between consecutive instants."""
    spans = EXPORTER.get_finished_spans()
    root = max((s for s in spans if s.name == "cacheback.request"), key=lambda s: s.start_time or 0)
    stages = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    out: dict[str, float] = {}
    out["call -> request sent"] = (marks["sent"] - call_start) * 1000
    out["answer back -> call returns"] = (call_end - marks["answered"]) * 1000
    out["sent early (1: yes)"] = float(any(
        s.name == "cacheback.upstream" and marks["sent"] < (s.start_time or 0) / 1e9 for s in spans
    ))
    prev_name, prev = "call", call_start
    for span in stages:
        name = span.name.removeprefix("cacheback.")
        start, end = (span.start_time or 0) / 1e9, (span.end_time or 0) / 1e9
        out[f"{prev_name} -> {name}"] = (start - prev) * 1000
        if name == "upstream":
            out["upstream: until the request is sent"] = (marks["sent"] - start) * 1000
            break
        out[name] = (end - start) * 1000
        prev_name, prev = name, end
    EXPORTER.clear()
    return out


async def run(base: str, misses: int, speculative: bool) -> None:
    timeline: dict[str, list[float]] = defaultdict(list)
    plain_marks: dict[str, float] = {}
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        plain = openai.AsyncOpenAI(
            base_url=base, api_key="sk-bench", max_retries=0, http_client=http_client(plain_marks)
        )
        async with AsyncCachedOpenAI(
            base_url=base, api_key="sk-bench", max_retries=0, cache_dir=d, http_client=http_client(marks),
            speculative_upstream=speculative,
        ) as client:
            ask = client.chat.completions.create
            await ask(model="gpt-4o", messages=[{"role": "user", "content": "How do I reverse a list?"}])
            await client.cache.flush()
            await anyio.sleep(0.5)  # the stored question reaches the miss predictor meanwhile
            EXPORTER.clear()
            total = []
            for i in range(misses):
                t0 = time.time()
                q = DISTINCT[i % len(DISTINCT)] + (f" ({i})" if i >= len(DISTINCT) else "")
                q = q if speculative else f"Question {i} on rivers"
                await ask(model="gpt-4o", messages=[{"role": "user", "content": q}])
                t1 = time.time()
                total.append((t1 - t0) * 1000)
                for k, v in steps(t0, t1, marks).items():
                    timeline[k].append(v)
            base_total = []
            for i in range(misses):
                t0 = time.time()
                await plain.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"Plain {i}"}]
                )
                t1 = time.time()
                base_total.append((t1 - t0) * 1000)
                sent, answered = plain_marks["sent"], plain_marks["answered"]
                timeline["plain SDK: call -> request sent"].append((sent - t0) * 1000)
                timeline["plain SDK: answer back -> call returns"].append((t1 - answered) * 1000)
        await plain.close()
    miss, plain_p50 = statistics.median(total), statistics.median(base_total)
    print(f"miss p50 {miss:.2f} ms, plain SDK call p50 {plain_p50:.2f} ms, added {miss - plain_p50:.2f} ms")
    for name, values in timeline.items():
        print(f"  {name:42s} {statistics.median(values):7.3f} ms")
    # The same as figures loadtests/ab.py reads (one name, one number).
    print(f"added_ms {miss - plain_p50:.3f}")
    for name, values in timeline.items():
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        while "__" in slug:
            slug = slug.replace("__", "_")
        print(f"{slug} {statistics.median(values):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--misses", type=int, default=40)
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--speculative", action="store_true", help="speculative_upstream on")
    args = ap.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    with fake_in_subprocess(args.delay) as base:
        anyio.run(run, base, args.misses, args.speculative)

if __name__ == "__main__":
    main()
