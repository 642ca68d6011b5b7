"""Per-call cost of the verbatim decision (guard + scorer), p50/p99.

    python loadtests/bench_guard.py [--rounds N]

Pairs come from the near-miss suite (tests/data/near_miss.jsonl): realistic user
questions, half of them vetoed. Three cases:

* cold: neither text seen before (both texts' features extracted) — the worst case;
* lookup: the cached candidate's features are warm, the query is new — what a lookup
  pays, since a candidate is compared many times and a query once;
* warm: the same pair again (the pair result is memoised).

The issue's budget is 0.2 ms p50 per lookup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from cacheback.guard import clear_caches, verbatim_decision, word_overlap

SUITE = Path(__file__).resolve().parent.parent / "tests" / "data" / "near_miss.jsonl"
BUDGET_MS = 0.2


def _pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in SUITE.read_text(encoding="utf-8").splitlines() if line]
    return [(r["query"], r["candidate"]) for r in rows]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99


def run(rounds: int) -> dict[str, tuple[float, float]]:
    pairs = _pairs()
    verbatim_decision("warm up", "the scorer", 0.95)  # loads the shipped model once
    cold: list[float] = []
    lookup: list[float] = []
    warm: list[float] = []
    for _ in range(rounds):
        for query, candidate in pairs:
            clear_caches()
            t0 = time.perf_counter()
            verbatim_decision(query, candidate, 0.95)
            cold.append(time.perf_counter() - t0)

            clear_caches()
            word_overlap(candidate, candidate)  # analyses the cached entry's side: warm
            t0 = time.perf_counter()
            verbatim_decision(query, candidate, 0.95)
            lookup.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            verbatim_decision(query, candidate, 0.95)
            warm.append(time.perf_counter() - t0)
    return {
        name: tuple(x * 1000 for x in _percentiles(samples))  # type: ignore[misc]
        for name, samples in (("cold", cold), ("lookup", lookup), ("warm", warm))
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    results = run(args.rounds)
    for name, (p50, p99) in results.items():
        print(f"{name:<7} p50 {p50:.4f} ms   p99 {p99:.4f} ms")
    for name, (p50, p99) in results.items():  # as figures for loadtests/ab.py
        print(f"{name}_p50_ms  {p50:.4f}")
        print(f"{name}_p99_ms  {p99:.4f}")
    p50 = results["lookup"][0]
    verdict = "within" if p50 <= BUDGET_MS else "OVER"
    print(f"lookup p50 {p50:.4f} ms: {verdict} the {BUDGET_MS} ms budget")
    return 0 if p50 <= BUDGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
