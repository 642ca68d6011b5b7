"""int8 against float32 compute by batch size, in one process, alternating.

    python loadtests/bench_batch_kernels.py [--rounds 3] [--seconds 1.5] [--sizes 1,4,8,16,32]

Would choosing the kernel per batch (int8 for small batches, float32 for large ones) beat
int8 alone? For each batch size, each round embeds distinct questions in batches of that
size for ``--seconds`` with one kernel and then the other (the order flips every round),
and prints queries per second per kernel (median of the rounds) and their ratio. Also
prints the RSS the second session costs, and how far the two kernels' vectors of the same
texts differ (a per-batch choice would give one text either vector). Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from cacheback.adapters.embedders import MiniLMEmbedder

SUBJECTS = ["a list", "a file", "a string", "a date", "a socket", "a thread", "a map", "an array"]
VERBS = ["reverse", "sort", "parse", "copy", "compare", "merge", "split", "encode", "hash", "print"]
LANGUAGES = ["Python", "Go", "Rust", "Java", "Ruby", "Kotlin", "Swift", "PHP", "C#", "Perl"]


def texts() -> list[str]:
    return [f"How do I {v} {s} in {lang}?" for v in VERBS for s in SUBJECTS for lang in LANGUAGES]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rate(emb: MiniLMEmbedder, pool: list[str], size: int, seconds: float, start: int) -> float:
    done, i = 0, start
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        batch = [pool[(i + j) % len(pool)] for j in range(size)]
        emb.embed(batch)
        i += size
        done += size
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--sizes", default="1,4,8,16,32")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pool = texts()
    base = rss_mb()
    kernels = {"int8": MiniLMEmbedder(compute="int8", keep_warm_ms=0)}
    kernels["int8"].embed(pool[:32])
    with_one = rss_mb()
    kernels["float32"] = MiniLMEmbedder(compute="float32", keep_warm_ms=0)
    kernels["float32"].embed(pool[:32])
    with_two = rss_mb()
    print(f"rss_mb_one_session {with_one - base:.1f}")
    print(f"rss_mb_second_session {with_two - with_one:.1f}")
    a, b = kernels["int8"].embed(pool), kernels["float32"].embed(pool)
    drift = np.abs(a @ a.T - b @ b.T)[np.triu_indices(len(pool), k=1)]
    print(f"self_cosine_min {float(np.min(np.sum(a * b, axis=1))):.5f}")
    print(f"pair_similarity_change_max {float(drift.max()):.4f}")
    print(f"pair_similarity_change_p99 {float(np.percentile(drift, 99)):.4f}")
    for size in sizes:
        seen: dict[str, list[float]] = {"int8": [], "float32": []}
        for r in range(args.rounds):
            order = ("int8", "float32") if r % 2 == 0 else ("float32", "int8")
            for name in order:
                seen[name].append(rate(kernels[name], pool, size, args.seconds, r * 97))
        i8, f32 = statistics.median(seen["int8"]), statistics.median(seen["float32"])
        print(f"qps_int8_b{size} {i8:.1f}")
        print(f"qps_float32_b{size} {f32:.1f}")
        print(f"float32_over_int8_b{size} {f32 / i8:.3f}")


if __name__ == "__main__":
    main()
