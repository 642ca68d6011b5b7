"""The engine's hit decisions over a scope, as a digest to compare between checkouts.

    PYTHONPATH=<checkout> python loadtests/engine_decisions.py [--entries 1000] [--lookups 600]

Fills one scope with ``bench_cpu_share.py``'s questions, then looks up, one at a time (so
every embedding is a batch of one, the same floats in every run): its paraphrases; after
them, questions that are not stored, each stored after its lookup and then asked again
reworded (a question judged as a new one whose answer is stored, then a candidate). Every
outcome (tier, the entry served, each candidate with its similarity and guard reasons)
goes into the digest. Run it with another checkout first on ``PYTHONPATH`` (this file
uses the public API only) and compare the digests; ``--show`` prints the outcomes.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu_share import LANGUAGES, TASKS, lookups, questions

from cacheback import AsyncSemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder


def unstored(n: int) -> list[tuple[str, str]]:
    """(a question not in the scope, a rewording of it)."""
    out = []
    for i in range(n):
        lang, task = LANGUAGES[i % len(LANGUAGES)], TASKS[(3 * i + 1) % len(TASKS)]
        out.append((f"Could you explain how to {task} using {lang} version {i % 7 + 2}?",
                    f"Explain how to {task} using {lang} version {i % 7 + 2}, please"))
    return out


async def run(entries: int, asked: int, fresh: int, cache_dir: str, show: bool) -> None:
    digest = hashlib.sha256()
    hits = 0
    emb = MiniLMEmbedder(intra_op_threads=2)
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=emb) as cache:
        for q in questions(entries):
            await cache.populate(q, f"An answer to: {q}")

        async def judge(query: str) -> None:
            nonlocal hits
            r = await cache.lookup_detailed(query)
            hits += r.hit
            line = repr((query, r.tier, r.answer, r.similarity, r.guard_reasons,
                         [(c["query"], c["similarity"], c["guard_reasons"]) for c in r.candidates]))
            digest.update(line.encode())
            if show:
                print(line)

        for query in lookups(entries)[:asked]:
            await judge(query)
        for query, reworded in unstored(fresh):
            await judge(query)
            await cache.populate(query, f"An answer to: {query}")
            await judge(reworded)
    print(f"lookups {asked + 2 * fresh}")
    print(f"hits {hits}")
    print(f"digest {int(digest.hexdigest()[:12], 16)}")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--lookups", type=int, default=600)
    ap.add_argument("--fresh", type=int, default=100, help="questions stored after their lookup")
    ap.add_argument("--show", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        anyio.run(run, args.entries, args.lookups, args.fresh, d, args.show)


if __name__ == "__main__":
    main()
