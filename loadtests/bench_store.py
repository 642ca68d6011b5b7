"""Embedded-store benchmark: build N random entries, close, then in a fresh process time a cold
open, report its RSS and the semantic-search latency.

    python loadtests/bench_store.py [--entries 100000] [--dim 384] [--index auto] [--dir DIR]

Most entries share one large scope (searched through the index); the rest sit in small scopes of
five (searched by an exact scan of the scope). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from cacheback.adapters.storage import EmbeddedStore
from cacheback.core._types import NewEntry, text_hash

BIG_SCOPE = "big"
SMALL_EVERY = 10  # one entry in ten goes to a small scope
SMALL_SIZE = 5
BATCH = 5000
NOW = time.time()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) in MB, from /proc/self/status, else getrusage (no psutil).

    VmHWM is preferred: ru_maxrss survives exec, so a child started from a big parent would
    report the parent's peak.
    """
    fields: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    peak = fields.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return round(fields.get("VmRSS", peak), 1), round(peak, 1)


def scope_of(i: int) -> str:
    return f"small-{i // (SMALL_EVERY * SMALL_SIZE)}" if i % SMALL_EVERY == 0 else BIG_SCOPE


async def build(path: Path, n: int, dim: int, index: str) -> dict[str, float]:
    rng = np.random.default_rng(0)
    store = EmbeddedStore(path, dim, max_entries=n + 10, index=index)  # type: ignore[arg-type]
    await store.open()
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        vecs = rng.standard_normal((stop - start, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        await store.entries.put(
            [
                NewEntry(
                    scope_of(i),
                    f"question number {i} about topic {i % 977}",
                    text_hash(f"question number {i} about topic {i % 977}"),
                    f"answer {i}: " + "lorem ipsum dolor sit amet " * 10,
                    vecs[i - start],
                    NOW,
                    NOW + 86400,
                )
                for i in range(start, stop)
            ]
        )
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    await store.close()
    return {"build_s": round(built, 2), "close_save_s": round(time.perf_counter() - t0, 2)}


def query_vectors(path: Path, ids: list[int], dim: int) -> list[tuple[int, str, np.ndarray]]:
    """Stored vectors plus a little noise (cosine ~0.98), read straight from SQLite."""
    conn = sqlite3.connect(path / "cache.db")
    try:
        rows = conn.execute(
            f"SELECT id, scope, vector FROM entries WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchall()
    finally:
        conn.close()
    rng = np.random.default_rng(1)
    out = []
    for entry_id, scope, blob in rows:
        v = np.frombuffer(blob, dtype=np.float32) + 0.01 * rng.standard_normal(dim).astype(np.float32)
        out.append((entry_id, scope, (v / np.linalg.norm(v)).astype(np.float32)))
    return out


async def cold(path: Path, n: int, dim: int, index: str, queries: int, ef: int) -> dict[str, Any]:
    store = EmbeddedStore(path, dim, max_entries=n + 10, index=index, ef_search=ef)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    await store.open()
    out: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 3)}
    out["rss_after_open_mb"], out["peak_rss_after_open_mb"] = rss_mb()
    out["index"] = store.describe()["index"]
    picks = random.Random(2).sample(range(1, n + 1), min(n, queries))
    qs = query_vectors(path, picks, dim)
    timings: dict[str, list[float]] = {"big": [], "small": []}
    hits = 0
    for source, scope, q in qs:
        t0 = time.perf_counter()
        found = await store.entries.search(scope, q, 5, time.time())
        timings["big" if scope == BIG_SCOPE else "small"].append((time.perf_counter() - t0) * 1000)
        hits += bool(found) and found[0][0].id == source
    everything = timings["big"] + timings["small"]
    out["search_p50_ms"] = round(pct(everything, 0.5), 3)
    out["search_p95_ms"] = round(pct(everything, 0.95), 3)
    for kind, values in timings.items():
        if values:
            out[f"search_{kind}_scope_p50_ms"] = round(pct(values, 0.5), 3)
    out["top1_is_source"] = round(hits / max(1, len(qs)), 4)  # recall of the near-duplicate
    exact = []
    for i in picks[:500]:
        text = f"question number {i} about topic {i % 977}"
        t0 = time.perf_counter()
        await store.entries.find_exact(scope_of(i), text_hash(text), time.time())
        exact.append((time.perf_counter() - t0) * 1000)
    out["find_exact_p50_ms"] = round(pct(exact, 0.5), 3)
    t0 = time.perf_counter()
    await store.close()
    out["close_s"] = round(time.perf_counter() - t0, 3)
    out["rss_end_mb"], out["peak_rss_mb"] = rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--index", choices=["auto", "hnsw", "numpy"], default="auto")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--ef", type=int, default=64, help="hnsw ef at search time")
    ap.add_argument("--dir", type=Path, help="reuse or keep this cache directory")
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()

    if args.cold:
        result = anyio.run(cold, args.dir, args.entries, args.dim, args.index, args.queries, args.ef)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="cacheback-bench-") as tmp:
        path = args.dir or Path(tmp) / "cache"
        figures: dict[str, Any] = {"entries": args.entries, "dim": args.dim, "ef_search": args.ef}
        if not (path / "cache.db").exists():
            figures.update(anyio.run(build, path, args.entries, args.dim, args.index))
        cmd = [sys.executable, __file__, "--cold", "--dir", str(path)]
        cmd += ["--entries", str(args.entries), "--dim", str(args.dim), "--index", args.index]
        cmd += ["--queries", str(args.queries), "--ef", str(args.ef)]
        child = subprocess.run(cmd, check=True, capture_output=True, text=True)
        figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
        db_mb = sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 2**20
        figures["directory_mb"] = round(db_mb, 1)
    for key, value in figures.items():
        print(f"{key:28s} {value}")


if __name__ == "__main__":
    main()
