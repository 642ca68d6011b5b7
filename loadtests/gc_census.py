"""Which objects the garbage collector tracks in a cache process, and who made them.

    python loadtests/gc_census.py [--top 25] [--lookups 300]

Opens an ``AsyncSemanticCache`` with the default embedder, as an application embedding
the library does, and counts the objects ``gc.get_objects()`` returns (the ones every
full collection walks): after the imports, after opening the cache, and after a warm-up
of stores and lookups, then times a full collection before and after
``cacheback.freeze_gc()``. Each census is grouped by type and by the package whose code
allocated the object (``tracemalloc``, started before the imports). A full collection's
pause grows with that count; the figures printed last are ``name value`` lines for
``loadtests/ab.py``. It asserts nothing.
"""

from __future__ import annotations

import tracemalloc

tracemalloc.start(1)

import argparse  # noqa: E402
import collections  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import anyio  # noqa: E402

from cacheback import AsyncSemanticCache  # noqa: E402
from cacheback.adapters.embedders import MiniLMEmbedder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess  # noqa: E402
from bench_engine import TOPICS  # noqa: E402


def origin(obj: object) -> str:
    """The package (or stdlib module) whose line allocated ``obj``, if it was traced."""
    tb = tracemalloc.get_object_traceback(obj)
    if tb is None:
        return "(before tracing / untraced)"
    name = tb[0].filename
    for marker in ("site-packages/", "/lib/python3"):
        if marker in name:
            rest = name.split(marker, 1)[1]
            parts = rest.split("/")
            if marker == "/lib/python3":
                parts = parts[1:]  # drop "X.Y"
            return "/".join(parts[:2]) if parts and not parts[0].endswith(".py") else parts[0]
    if "/cacheback/" in name:
        return "cacheback/" + name.split("/cacheback/", 1)[1]
    return name.rsplit("/", 1)[-1]


def census(label: str, top: int) -> int:
    gc.collect()
    objs = gc.get_objects()
    by_type = collections.Counter(type(o).__qualname__ for o in objs)
    by_origin = collections.Counter(origin(o) for o in objs)
    print(f"\n== {label}: {len(objs)} tracked objects, {gc.get_freeze_count()} frozen", file=sys.stderr)
    print("   by type:", file=sys.stderr)
    for name, n in by_type.most_common(top):
        print(f"     {n:8d}  {name}", file=sys.stderr)
    print("   by where allocated:", file=sys.stderr)
    for name, n in by_origin.most_common(top):
        print(f"     {n:8d}  {name}", file=sys.stderr)
    return len(objs)


def full_pause_ms(repeat: int = 5) -> float:
    """The median time of a full collection of what is tracked now."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def freeze_figures() -> dict[str, float]:
    """A full collection's pause now, and after ``cacheback.freeze_gc()`` (undone after),
    in turns: the same process, the same moment, so the ratio survives a loaded machine."""
    import cacheback

    before, after = [], []
    for _ in range(3):
        before.append(full_pause_ms(3))
        cacheback.freeze_gc()
        after.append(full_pause_ms(3))
        left = len(gc.get_objects())
        gc.unfreeze()
    return {
        "full_collection_ms": sorted(before)[1],
        "full_collection_ms_frozen": sorted(after)[1],
        "tracked_left_after_freeze": left,
    }


async def run(top: int, lookups: int) -> dict[str, float]:
    out: dict[str, float] = {}
    out["tracked_after_imports"] = census("after imports", top)
    emb = MiniLMEmbedder()
    with tempfile.TemporaryDirectory() as d:
        async with AsyncSemanticCache(cache_dir=d, embedder=emb) as cache:
            out["tracked_after_open"] = census("after opening the cache", top)
            for t in TOPICS:
                await cache.populate(f"How do I {t}?", f"Here is how to {t}.")
            for i in range(lookups):
                t = TOPICS[i % len(TOPICS)]
                await cache.lookup(f"How can I {t}? (variant {i})")
                await cache.lookup(f"How do I {t}?")
            await cache.flush()
            out["tracked_after_warmup"] = census(f"after {lookups} rounds of lookups", top)
            out.update(freeze_figures())
    return out


async def run_clients(top: int, lookups: int) -> dict[str, float]:
    """The same through ``AsyncCachedOpenAI`` against the fake provider (the SDK's objects
    count too: they share the collector with the cache's)."""
    from cacheback import AsyncCachedOpenAI

    out: dict[str, float] = {}
    out["tracked_after_imports"] = census("after imports", top)
    emb = MiniLMEmbedder()
    with fake_in_subprocess(0.0) as base, tempfile.TemporaryDirectory() as d:
        async with AsyncCachedOpenAI(
            base_url=base, api_key="sk-census", max_retries=0, cache_dir=d, embedder=emb
        ) as client:
            call = client.chat.completions.create

            def msg(text: str) -> list[dict[str, str]]:
                return [{"role": "user", "content": text}]

            await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            out["tracked_after_open"] = census("after the first call", top)
            for i in range(lookups):
                t = TOPICS[i % len(TOPICS)]
                await call(model="gpt-4o", messages=msg(f"How do I {t}?"))
                await call(model="gpt-4o", messages=msg(f"How can I {t}? (variant {i % 20})"))
            await client.cache.flush()
            out["tracked_after_warmup"] = census(f"after {lookups} rounds of calls", top)
            out.update(freeze_figures())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--lookups", type=int, default=300)
    ap.add_argument("--clients", action="store_true", help="through AsyncCachedOpenAI and the fake provider")
    args = ap.parse_args()
    tracemalloc_figures = anyio.run(run_clients if args.clients else run, args.top, args.lookups)
    tracemalloc.stop()
    for k, v in tracemalloc_figures.items():
        print(f"{k:32s} {v:10.3f}")


if __name__ == "__main__":
    main()
