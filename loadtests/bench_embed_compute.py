"""int8 against float32 compute of the packaged MiniLM: speed, memory and how far vectors move.

    python loadtests/bench_embed_compute.py [--questions 600] [--gap 0.3]

Each mode runs in a fresh process (so peak RSS is its own) and prints: load time, one
query after an idle gap of --gap seconds (the state a miss finds the CPU in after the
upstream wait), one query warm, a batch of 32 evaluation questions, peak RSS. Then it
compares the vectors of both modes over the evaluation questions. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PAIRS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "meancache_val.csv"
FALLBACK = [
    "How do I reverse a list in Python?",
    "What is the capital of France?",
    "How to sort a dict by value?",
    "Why is my Docker build slow?",
]


def questions(n: int) -> list[str]:
    if not PAIRS.is_file():
        return [f"{q} (case {i})" for i in range(n) for q in FALLBACK][:n]
    out: list[str] = []
    with PAIRS.open(encoding="utf-8") as fh:
        rows = csv.reader(fh)
        next(rows)
        for row in rows:
            out += [t for t in row[:2] if t]
    return list(dict.fromkeys(out))[:n]


def measure(compute: str, n: int, gap: float) -> dict[str, float]:
    from cacheback.adapters.embedders import MiniLMEmbedder

    t0 = time.perf_counter()
    emb = MiniLMEmbedder(compute=compute)
    emb.load()
    load_s = time.perf_counter() - t0
    texts = questions(n)
    emb.embed(texts[:32])
    idle, warm, batch = [], [], []
    for i in range(20):
        time.sleep(gap)
        t = time.perf_counter()
        emb.embed([f"Unrelated question number {i} about geology"])
        idle.append(time.perf_counter() - t)
    for i in range(30):
        t = time.perf_counter()
        emb.embed([f"Unrelated question number {i} about geology"])
        warm.append(time.perf_counter() - t)
    for i in range(10):
        t = time.perf_counter()
        emb.embed(texts[i * 32 : (i + 1) * 32])
        batch.append(time.perf_counter() - t)
    np.save(sys.stdout.buffer, emb.embed(texts))  # the vectors, for the comparison
    return {
        "compute": emb.describe()["compute"],
        "load_s": load_s,
        "idle_ms": statistics.median(idle) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "batch32_ms": statistics.median(batch) * 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(compute: str, n: int, gap: float) -> tuple[dict[str, float], np.ndarray]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", compute, "--questions", str(n), "--gap", str(gap)],
        check=True,
        capture_output=True,
    )
    import io

    buf = io.BytesIO(out.stdout)
    vectors = np.load(buf)
    figures = json.loads(out.stderr.decode().strip().splitlines()[-1])
    return figures, vectors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=600)
    ap.add_argument("--gap", type=float, default=0.3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        figures = measure(args.child, args.questions, args.gap)
        print(json.dumps(figures), file=sys.stderr)
        return
    results = {mode: run_child(mode, args.questions, args.gap) for mode in ("float32", "int8")}
    print(f"{'':34s} {'float32':>10s} {'int8':>10s}")
    for key, label in (
        ("compute", "compute in effect"),
        ("load_s", "load (s)"),
        ("idle_ms", f"one query after {args.gap:g} s idle, p50 ms"),
        ("warm_ms", "one query warm, p50 ms"),
        ("batch32_ms", "batch of 32 questions, p50 ms"),
        ("rss_mb", "peak RSS (MB)"),
    ):
        a, b = results["float32"][0][key], results["int8"][0][key]
        cell = (lambda v: f"{v:10.2f}") if isinstance(a, float) else (lambda v: f"{v!s:>10s}")
        print(f"{label:34s} {cell(a)} {cell(b)}")
    exact, fast = results["float32"][1], results["int8"][1]
    self_cos = np.sum(exact * fast, axis=1)
    drift = np.abs(exact @ exact.T - fast @ fast.T)[np.triu_indices(len(exact), k=1)]
    print(f"questions compared: {len(exact)}")
    print(f"cosine of a text with itself across modes: min {self_cos.min():.5f}")
    print(f"change of pair similarity: max {drift.max():.4f}, p99 {np.percentile(drift, 99):.4f}")


if __name__ == "__main__":
    main()
