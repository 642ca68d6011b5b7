"""What one lone question costs the default embedder, warm and after an idle gap, for ab.py.

    python loadtests/bench_lone.py [--repeat 40] [--gap 0.3]
    python loadtests/ab.py --base ../other-tree --rounds 3 -- loadtests/bench_lone.py

Times ``MiniLMEmbedder.embed([question])`` (tokenizer, inputs, inference, pooling, all of
it) for distinct short questions: right after ``--gap`` seconds without inference, and
back to back. Also the process CPU time per lone question (onnxruntime's threads
included: steadier than wall time on a shared machine), a batch of 32 questions, and the
peak RSS. Prints ``name value`` lines; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from cacheback.adapters.embedders import MiniLMEmbedder

SUBJECTS = ["a list in Python", "a git branch", "a CSV file", "a Docker image", "an HTTP header"]


def question(i: int) -> str:
    return f"How do I rename {SUBJECTS[i % len(SUBJECTS)]} without breaking number {i}?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    emb = MiniLMEmbedder()
    emb.load()
    load_s = time.perf_counter() - t0
    emb.embed([question(i) for i in range(32)])
    idle, warm = [], []
    for i in range(args.repeat):
        time.sleep(args.gap)
        t = time.perf_counter()
        emb.embed([question(1000 + i)])
        idle.append(time.perf_counter() - t)
    c0 = time.process_time()
    for i in range(args.repeat):
        t = time.perf_counter()
        emb.embed([question(2000 + i)])
        warm.append(time.perf_counter() - t)
    cpu = (time.process_time() - c0) / args.repeat
    batch = []
    for r in range(5):
        texts = [question(3000 + 32 * r + i) for i in range(32)]
        t = time.perf_counter()
        emb.embed(texts)
        batch.append(time.perf_counter() - t)
    print(f"load_s  {load_s:.3f}")
    print(f"lone_after_idle_ms  {statistics.median(idle) * 1e3:.3f}")
    print(f"lone_warm_ms  {statistics.median(warm) * 1e3:.3f}")
    print(f"lone_warm_cpu_ms  {cpu * 1e3:.3f}")
    print(f"batch32_ms  {statistics.median(batch) * 1e3:.3f}")
    print(f"peak_rss_mb  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


if __name__ == "__main__":
    main()
