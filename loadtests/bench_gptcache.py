"""cacheback next to GPTCache on the same data, same embedder, same cosine threshold.

    pip install -r loadtests/requirements-peer.txt     # GPTCache and FAISS: never a dependency
    python loadtests/bench_gptcache.py [--data PATH/gptcache_mock_data.json] [--rounds 3]
        [--threshold 0.92] [--sequential 300] [--plot docs/bench-gptcache.svg]

Data: a JSON list of ``{"origin", "similar"}`` pairs (read for measuring only). Every
``origin`` is stored with a unique answer; every ``similar`` is looked up once. A hit is
correct when it returns the answer of its own pair's origin, wrong when it returns any
other answer, otherwise a miss. A GPTCache lookup that raises (under 16 threads its SQLite
store can answer "database is locked": every hit updates the entry's last_access) is counted
as a miss and as an error; a cacheback lookup that raises stops the benchmark.

Both systems get:

- their default storage: GPTCache's SQLite + FAISS data manager (``manager_factory
  ("sqlite,faiss")``, its ``SearchDistanceEvaluation``); cacheback's embedded store
  (SQLite + hnswlib) with its defaults (the hit guard on);
- the same embedder: a ``MiniLMEmbedder`` each (all-MiniLM-L6-v2 on the default kernel),
  GPTCache through its ``embedding_func`` hook;
- the same cosine threshold. GPTCache's FAISS index is ``IndexFlatL2``: it returns the
  squared L2 distance d, which for unit vectors is d = 2 - 2·cos. The evaluation turns it
  into a score 4 - d = 2 + 2·cos (``max_distance`` = 4), and a result is a hit when
  score >= 4·t (t = ``similarity_threshold``, the range being [0, 4]). So
  cos >= c  <=>  t = (1 + c) / 2; cosine 0.92 is t = 0.96.

Each round builds a fresh cache of each system (order alternating between rounds), loads
the origins, then looks up every ``similar`` exactly once: the first ``--sequential`` of
them (a different random subset each round) one at a time, for the latency percentiles; the
rest at concurrency 64 (cacheback: 64 asyncio tasks; GPTCache: 16 threads, its usual way
to serve), for the throughput. Every lookup is a text the cache has not seen before, so
cacheback's memory of earlier decisions never answers one. Prints min / median / max over
rounds and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import atexit
import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from cacheback import AsyncSemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
CONCURRENCY = 64
# GPTCache registers an exit hook per cache that saves its FAISS index into the cache's
# directory, so its directories must outlive main(): all of them live in this one, which a
# hook registered before any of GPTCache's removes last (exit hooks run in reverse order).
WORK = tempfile.mkdtemp(prefix="bench-gptcache-")
atexit.register(shutil.rmtree, WORK, True)
GPTCACHE_THREADS = 16


def answer_of(i: int) -> str:
    return f"stored answer number {i}"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Tally:
    def __init__(self) -> None:
        self.correct = self.wrong = self.miss = self.errors = 0
        self._lock = threading.Lock()

    def failed(self) -> None:
        """A lookup that raised: the caller gets no answer (counted as a miss too)."""
        with self._lock:
            self.errors += 1
            self.miss += 1

    def add(self, expected: int, got: str | None) -> None:
        with self._lock:
            if got is None:
                self.miss += 1
            elif got == answer_of(expected):
                self.correct += 1
            else:
                self.wrong += 1


def result(
    system: str, load_s: float, seq_ms: list[float], conc_n: int, conc_s: float, tally: Tally
) -> dict[str, float | str]:
    return {
        "system": system,
        "load_s": load_s,
        "seq_p50_ms": pct(seq_ms, 0.5),
        "seq_p99_ms": pct(seq_ms, 0.99),
        "throughput_c64": conc_n / conc_s,
        "correct": tally.correct,
        "wrong": tally.wrong,
        "miss": tally.miss,
        "errors": tally.errors,
    }


# -- GPTCache (called, never copied) ------------------------------------------------------------


def run_gptcache(
    pairs: list[dict[str, str]], order: list[int], n_seq: int, threshold: float, emb: MiniLMEmbedder
) -> dict[str, float | str]:
    from gptcache import Cache, Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import manager_factory
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    def embedding_func(text: str, **_: Any) -> np.ndarray[Any, Any]:
        return emb.embed([text])[0]

    d = tempfile.mkdtemp(dir=WORK)
    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt,
        embedding_func=embedding_func,
        data_manager=manager_factory(
            "sqlite,faiss", data_dir=d, max_size=len(pairs) + 1, vector_params={"dimension": emb.dim}
        ),
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(similarity_threshold=(1 + threshold) / 2),
    )
    t0 = time.perf_counter()
    for i, pair in enumerate(pairs):
        put(pair["origin"], answer_of(i), cache_obj=cache)
    load_s = time.perf_counter() - t0
    tally = Tally()
    seq_ms: list[float] = []

    def one(i: int) -> None:
        try:
            got = get(pairs[i]["similar"], cache_obj=cache)
        except Exception:  # e.g. "database is locked": its lookups write last_access
            tally.failed()
        else:
            tally.add(i, got)

    for i in order[:n_seq]:
        t = time.perf_counter()
        one(i)
        seq_ms.append((time.perf_counter() - t) * 1000)

    rest = order[n_seq:]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(GPTCACHE_THREADS) as pool:
        list(pool.map(one, rest))
    conc_s = time.perf_counter() - t0
    return result("gptcache", load_s, seq_ms, len(rest), conc_s, tally)


# -- cacheback ---------------------------------------------------------------------------------


async def run_cacheback_async(
    pairs: list[dict[str, str]], order: list[int], n_seq: int, threshold: float, emb: MiniLMEmbedder
) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(dir=WORK) as d:
        async with AsyncSemanticCache(cache_dir=d, similarity_threshold=threshold, embedder=emb) as cache:
            t0 = time.perf_counter()
            for i, pair in enumerate(pairs):
                await cache.populate(pair["origin"], answer_of(i))
            await cache.flush()
            load_s = time.perf_counter() - t0
            tally = Tally()
            seq_ms: list[float] = []
            for i in order[:n_seq]:
                t = time.perf_counter()
                got = await cache.lookup(pairs[i]["similar"])
                seq_ms.append((time.perf_counter() - t) * 1000)
                tally.add(i, got)
            rest = iter(order[n_seq:])

            async def worker() -> None:
                for i in rest:  # a shared iterator: each query taken by one task
                    tally.add(i, await cache.lookup(pairs[i]["similar"]))

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
            conc_s = time.perf_counter() - t0
    return result("cacheback", load_s, seq_ms, len(order) - n_seq, conc_s, tally)


def run_cacheback(
    pairs: list[dict[str, str]], order: list[int], n_seq: int, threshold: float, emb: MiniLMEmbedder
) -> dict[str, float | str]:
    return anyio.run(run_cacheback_async, pairs, order, n_seq, threshold, emb)


# -- report ------------------------------------------------------------------------------------

Runner = Callable[[list[dict[str, str]], list[int], int, float, MiniLMEmbedder], dict[str, float | str]]
FIGURES = ("throughput_c64", "seq_p50_ms", "seq_p99_ms", "load_s", "correct", "wrong", "miss", "errors")


def summary(runs: list[dict[str, float | str]]) -> dict[str, tuple[float, float, float]]:
    out = {}
    for key in FIGURES:
        values = [float(r[key]) for r in runs]
        out[key] = (min(values), statistics.median(values), max(values))
    return out


def plot(path: Path, results: dict[str, list[dict[str, float | str]]], note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, diff-able file

    systems = ["cacheback", "gptcache"]
    colours = {"cacheback": "#2b6cb0", "gptcache": "#a0aec0"}
    panels = [
        ("throughput_c64", "lookups/s at concurrency 64\n(higher is better)"),
        ("seq_p50_ms", "sequential lookup p50, ms\n(lower is better)"),
        ("quality", "lookups of 999 paraphrases\n(median round)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        if key == "quality":
            kinds = ["correct", "wrong", "miss"]
            x = np.arange(len(kinds))
            for j, s in enumerate(systems):
                med = [statistics.median(float(r[k]) for r in results[s]) for k in kinds]
                bars = ax.bar(x + (j - 0.5) * 0.38, med, 0.38, label=s, color=colours[s])
                ax.bar_label(bars, fmt="%.0f", fontsize=8)
            ax.set_xticks(x, kinds)
            ax.legend(fontsize=8, frameon=False)
            continue
        meds = [statistics.median(float(r[key]) for r in results[s]) for s in systems]
        lows = [meds[i] - min(float(r[key]) for r in results[s]) for i, s in enumerate(systems)]
        highs = [max(float(r[key]) for r in results[s]) - meds[i] for i, s in enumerate(systems)]
        bars = ax.bar(systems, meds, color=[colours[s] for s in systems], yerr=[lows, highs], capsize=4)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(
        f"cacheback vs GPTCache (SQLite + FAISS), same MiniLM embedder, cosine >= 0.92; {note}\n"
        "median of rounds, bars: min-max; GPTCache's misses include its failed lookups",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=EVAL / "gptcache_mock_data.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.92, help="cosine, for both systems")
    ap.add_argument("--sequential", type=int, default=300, help="lookups timed one at a time per round")
    ap.add_argument("--plot", type=Path, default=None, help="write a figure (matplotlib) here")
    ap.add_argument("--note", default="", help="a remark for the figure's title (e.g. the machine)")
    ap.add_argument("--from-log", type=Path, default=None, help="summarise a saved run's output instead")
    args = ap.parse_args()
    pairs: list[dict[str, str]] = json.loads(args.data.read_text(encoding="utf-8"))
    runners: dict[str, Runner] = {"cacheback": run_cacheback, "gptcache": run_gptcache}
    if args.from_log is not None:
        report(pairs, args, rounds_from_log(args.from_log))
        return
    embedders = {name: MiniLMEmbedder(keep_warm_ms=0) for name in runners}
    for emb in embedders.values():
        emb.embed(["load the model before timing"])
    results: dict[str, list[dict[str, float | str]]] = {name: [] for name in runners}
    rng = random.Random(1)
    for r in range(args.rounds):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        names = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in names:
            res = runners[name](pairs, order, args.sequential, args.threshold, embedders[name])
            results[name].append(res)
            figures = json.dumps({k: round(float(res[k]), 2) for k in FIGURES})
            print(f"# round {r + 1} {name}: {figures}", flush=True)
    report(pairs, args, results)


def rounds_from_log(path: Path) -> dict[str, list[dict[str, float | str]]]:
    """The per-round lines ("# round N system: {...}") of an earlier run's output."""
    results: dict[str, list[dict[str, float | str]]] = {"cacheback": [], "gptcache": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# round "):
            head, _, figures = line.partition(": ")
            results[head.split()[-1]].append(json.loads(figures))
    return results


def report(
    pairs: list[dict[str, str]], args: argparse.Namespace, results: dict[str, list[dict[str, float | str]]]
) -> None:
    rounds = len(results["cacheback"])
    print(f"\n{len(pairs)} pairs, cosine threshold {args.threshold}, {rounds} rounds (min / median / max)")
    sums = {name: summary(runs) for name, runs in results.items()}
    print(f"{'figure':16s} {'cacheback':>26s} {'gptcache':>26s}")
    for key in FIGURES:
        cells = [f"{lo:8.2f} {med:8.2f} {hi:8.2f}" for lo, med, hi in (sums[n][key] for n in results)]
        print(f"{key:16s} {cells[0]:>26s} {cells[1]:>26s}")
    cb, gc = sums["cacheback"], sums["gptcache"]
    print(f"throughput_ratio  {cb['throughput_c64'][1] / gc['throughput_c64'][1]:.3f}")
    print(f"seq_p50_ratio     {cb['seq_p50_ms'][1] / gc['seq_p50_ms'][1]:.3f}")
    if args.plot is not None:
        plot(args.plot, results, args.note)
        print(f"# plot written to {args.plot}")


if __name__ == "__main__":
    main()
