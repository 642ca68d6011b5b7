"""Milliseconds per query of the MiniLM embedder, by batch shape.

    python loadtests/bench_embedder.py [--repeat 20] [--threads 2] [--model-dir DIR]

Prints batch sizes 1, 8 and 32 of similar-length queries, then batches that
mix lengths (one long query + 31 short ones, and a spread of lengths) with
and without the length grouping. No assertions: the figures are for reading.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from cacheback.adapters.embedders import MiniLMEmbedder

SHORT = [
    "How do I reverse a list in Python?",
    "What is the capital of France?",
    "How to sort a dict by value?",
    "Best way to read a CSV file in pandas?",
    "What does HTTP 429 mean?",
    "How do I undo the last git commit?",
    "Convert a string to an int in Go",
    "Why is my Docker build slow?",
]
LONG = (
    "I am migrating a large Django monolith to a set of services and I keep running into "
    "problems with database transactions that span what used to be a single request. "
    "Orders, payments and inventory updates used to be atomic; now each lives in its own "
    "service with its own PostgreSQL database. I read about sagas, outbox tables and two "
    "phase commit but I do not know which one fits a team of five engineers who also have "
    "to keep the old system running. What would you recommend, which failure modes should "
    "I test first, and how do I roll it out without a big-bang cut-over?"
)


def similar(n: int, rng: random.Random) -> list[str]:
    return [rng.choice(SHORT) + f" (case {rng.randint(1, 999)})" for _ in range(n)]


def spread(n: int, rng: random.Random) -> list[str]:
    """Lengths from a few tokens to a paragraph, as real traffic has."""
    words = LONG.split()
    return [" ".join(words[: rng.choice((4, 8, 12, 16, 24, 40, 60, 90))]) for _ in range(n)]


def ms_per_query(embedder: MiniLMEmbedder, batch: Sequence[str], repeat: int) -> float:
    embedder.embed(batch)  # warm: allocator arenas, thread pool
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        embedder.embed(batch)
        samples.append((time.perf_counter() - start) * 1000 / len(batch))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()

    grouped = MiniLMEmbedder(args.model_dir, intra_op_threads=args.threads)
    plain = MiniLMEmbedder(args.model_dir, intra_op_threads=args.threads, length_grouping=False)
    grouped.load()
    plain.load()
    rng = random.Random(7)
    tokens = grouped._load()[1]  # only to report the token counts

    def lengths(batch: Sequence[str]) -> str:
        counts = sorted(len(e.ids) for e in tokens.encode_batch(list(batch)))
        return f"{counts[0]}-{counts[-1]} tokens"

    print(f"MiniLM ({grouped.describe()['model']}), intra_op_threads={args.threads}, median of {args.repeat}")
    for size in (1, 8, 32):
        batch = similar(size, rng)
        figure = ms_per_query(grouped, batch, args.repeat)
        print(f"  batch {size:>2}, similar lengths ({lengths(batch)}): {figure:6.2f} ms/query")
    mixed = [LONG, *similar(31, rng)]
    varied = spread(32, rng)
    for label, batch in (("1 long + 31 short", mixed), ("32 spread lengths", varied)):
        print(f"  batch 32, {label} ({lengths(batch)}):")
        print(f"      without grouping: {ms_per_query(plain, batch, args.repeat):6.2f} ms/query")
        print(f"      with grouping:    {ms_per_query(grouped, batch, args.repeat):6.2f} ms/query")


if __name__ == "__main__":
    main()
