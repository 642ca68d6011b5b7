"""Where the engine's CPU goes under load: inside onnxruntime or elsewhere.

    python loadtests/bench_cpu_share.py [--entries 1000] [--seconds 8] [--concurrency 64] [--threads] [--spy]

Fills one scope with ``--entries`` programming questions (similar enough to each other that
a lookup has several candidates for the hit guard to judge), then runs lookups of distinct
paraphrases (no exact repeats: every one embeds) at ``--concurrency`` for ``--seconds``.

The share is read from the kernel's per-thread CPU accounting (Linux ``/proc``), without a
profiler slowing the process down: CPU inside onnxruntime is the CPU of its own pool threads
(the threads that appear when the session loads and are not Python threads) plus the CPU
time of the calling thread inside ``session.run``; everything else the process burnt in the
window (the event loop, the guard, SQLite, the index, tokenising, pooling) is outside.

``--threads`` also splits the process's CPU in the window by thread (the event loop, the
worker threads less their time inside ``session.run``, SQLite's thread, onnxruntime's pool)
and times, on whatever thread runs them, the hit guard's verbatim decisions (``route``) and
its text analyses (``time.thread_time``: CPU, not waits), with the number of analyses and
of stored questions first judged in the window; and the analyses made while the scope was
filled (a stored question is analysed once: when its answer is written, where the rule
offers that, else on first use).

``--spy`` also attaches ``py-spy`` for the same window and lists where the Python threads
spent the samples outside onnxruntime (waits in queues, locks and ``select`` dropped). py-spy
pauses the process for every sample, which slows it down several times: use it to see
*where*, and the kernel figures for *how much*.

Prints figures; asserts nothing. Linux only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paraphrases import PREFIXES, SUFFIXES

from cacheback import AsyncSemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder

TASKS = [
    "reverse a list",
    "sort a dictionary by value",
    "read a CSV file",
    "make an HTTP request",
    "parse JSON",
    "connect to PostgreSQL",
    "write a unit test",
    "profile a slow function",
    "format a date",
    "split a string on commas",
    "read environment variables",
    "start a background thread",
    "remove duplicates from an array",
    "compute an MD5 hash",
    "download a file",
    "handle a timeout",
    "log to a file",
    "merge two sorted lists",
    "read a file line by line",
    "convert a string to an integer",
]
LANGUAGES = ["Python", "Go", "Rust", "Java", "JavaScript", "C#", "Ruby", "Kotlin", "Swift", "PHP"]
FORMS = [
    "How do I {t} in {l}?",
    "What is the best way to {t} in {l}?",
    "{l}: how to {t}?",
    "Show me how to {t} with {l}",
    "Is there a simple way to {t} in {l}?",
]
TICK = os.sysconf("SC_CLK_TCK")
#: Leaf frames of a thread that waits (py-spy's own idle test does not see these here).
WAITS = ("Condition.wait", "EpollSelector.select", "aiosqlite/core.py:59", "Queue.get", "Event.wait")


def questions(n: int) -> list[str]:
    combos = itertools.product(FORMS, LANGUAGES, TASKS)
    return [f.format(t=t, l=lang) for f, lang, t in itertools.islice(combos, n)]


def lookups(n: int) -> list[str]:
    """Distinct paraphrases of stored questions ("can" for "do", with a greeting or thanks)."""
    pairs = list(itertools.islice(itertools.product(LANGUAGES, TASKS), n))
    framing = itertools.product(PREFIXES, SUFFIXES)
    asked = [f"{p}how can I {t} in {lang}?{s}" for p, s in framing for lang, t in pairs]
    random.Random(0).shuffle(asked)
    return asked


def cpu_ticks(task: str = "") -> int:
    """utime + stime of the process, or of one of its threads, in clock ticks."""
    path = f"/proc/self/task/{task}/stat" if task else "/proc/self/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def tasks() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def python_threads() -> set[str]:
    return {str(t.native_id) for t in threading.enumerate() if t.native_id is not None}


class TimedSession:
    """The embedder's onnxruntime session, counting the caller's CPU time inside ``run``."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._lock = threading.Lock()
        self.cpu_s = 0.0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            spent = time.thread_time() - t0
            with self._lock:
                self.cpu_s += spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class Parts:
    """CPU (``time.thread_time``) of a few functions while ``on`` (see ``--threads``)."""

    def __init__(self) -> None:
        self.on = False
        self.cpu: dict[str, float] = {}
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, fn: Any) -> Any:
        self.cpu[name] = 0.0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on:
                    self.cpu[name] += time.thread_time() - t0
                    self.calls[name] += 1

        return timed

    def reset(self) -> None:
        self.cpu = dict.fromkeys(self.cpu, 0.0)
        self.calls.clear()


def thread_ticks() -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tasks():
        try:
            out[t] = cpu_ticks(t)
        except OSError:  # the thread ended meanwhile
            pass
    return out


def thread_kind(name: str) -> str:
    if name == "MainThread":
        return "event loop thread"
    if name.startswith("AnyIO worker"):
        return "worker threads (embedding, index search)"
    if name.startswith("Thread-"):
        return "other Python threads (SQLite's)"
    return f"other threads ({name})"


async def load(
    entries: int, seconds: float, concurrency: int, cache_dir: str, threads: bool = False
) -> None:
    parts = Parts()
    if threads:
        import cacheback.guard._extract as extract
        import cacheback.stages.tier_router as tier_router

        tier_router.route = parts.wrap("verbatim decisions (route)", tier_router.route)  # type: ignore[assignment]
        extract._analyse = parts.wrap("  of which text analyses", extract._analyse)
    emb = MiniLMEmbedder(intra_op_threads=2)
    before = tasks()
    emb.embed(["warm"])
    pool = tasks() - before - python_threads()  # onnxruntime's own threads
    timed = TimedSession(emb._session)
    emb._session = timed
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=emb) as cache:
        parts.on = threads
        for q in questions(entries):
            await cache.populate(q, f"An answer to: {q}")
        await cache.flush()
        parts.on = False
        fill_cpu, fill_calls = dict(parts.cpu), dict(parts.calls)
        parts.reset()
        asked = lookups(entries)
        hits = done = 0
        deadline = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal done, hits
            i = w
            while time.perf_counter() < deadline:
                if await cache.lookup(asked[i % len(asked)]) is not None:
                    hits += 1
                i += concurrency
                done += 1

        print("ready", flush=True)
        stored0 = _cache_misses("_entry_features")
        per_thread0 = thread_ticks() if threads else {}
        parts.on = threads
        t0, cpu0, pool0, run0 = time.perf_counter(), cpu_ticks(), _pool_ticks(pool), timed.cpu_s
        async with anyio.create_task_group() as tg:
            for w in range(concurrency):
                tg.start_soon(worker, w)
        elapsed = time.perf_counter() - t0
        cpu = (cpu_ticks() - cpu0) / TICK
        inside = (_pool_ticks(pool) - pool0) / TICK + (timed.cpu_s - run0)
        parts.on = False
        per_thread1 = thread_ticks() if threads else {}
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        stored1 = _cache_misses("_entry_features")
    print(f"lookups_per_s {done / elapsed:.1f}")
    print(f"hit_share {hits / max(1, done):.3f}")
    print(f"cores_busy {cpu / elapsed:.2f}")
    print(f"cpu_ms_per_lookup {1000 * cpu / max(1, done):.2f}")
    print(f"outside_cpu_ms_per_lookup {1000 * (cpu - inside) / max(1, done):.2f}")
    print(f"share_outside_onnxruntime {1 - inside / cpu:.3f}")
    print(f"onnxruntime_pool_threads {len(pool)}")
    if threads:
        n = max(1, done)
        by_kind: Counter[str] = Counter()
        for t, ticks in per_thread1.items():
            kind = "onnxruntime pool" if t in pool else thread_kind(names.get(t, "native"))
            by_kind[kind] += ticks - per_thread0.get(t, 0)
        in_run = timed.cpu_s - run0
        print("CPU per lookup by thread, ms (worker threads less their time inside session.run):")
        cpu_by_kind = {
            kind: ticks / TICK - (in_run if kind.startswith("worker") else 0.0)
            for kind, ticks in by_kind.items()
        }
        for kind, cpu_s in sorted(cpu_by_kind.items(), key=lambda kv: -kv[1]):
            if cpu_s > 0:
                print(f"  {1000 * cpu_s / n:7.3f}  {kind}")
        print("CPU per lookup in the hit guard, ms:")
        for name, cpu_s in parts.cpu.items():
            print(f"  {1000 * cpu_s / n:7.3f}  {name}")
        analyses = "  of which text analyses"
        print(f"  analyses: {parts.calls[analyses]} in all, {stored1 - stored0} stored questions"
              f" first judged, for {done} lookups")
        print(f"while filling: {fill_calls.get(analyses, 0)} analyses, "
              f"{1000 * fill_cpu.get(analyses, 0.0) / max(1, entries):.3f} ms CPU per stored entry")


def _cache_misses(name: str) -> int:
    import cacheback.guard._extract as extract

    cached = getattr(extract, name, None)
    info = getattr(cached, "cache_info", None)
    return int(info().misses) if info is not None else 0


def _pool_ticks(pool: set[str]) -> int:
    return sum(cpu_ticks(t) for t in pool)


#: Parts of the work outside onnxruntime, by a frame anywhere on the stack (first match wins).
AREAS = (
    ("hit guard", ("cacheback/guard/",)),
    ("sqlite", ("aiosqlite/", "storage/_sqlite.py", "storage/_rows.py")),
    ("vector index", ("_hnsw_index.py", "_numpy_index.py", "rank_blobs")),
    ("store (other)", ("adapters/storage/",)),
    ("embedder (outside onnxruntime)", ("adapters/embedders/",)),
    ("stages", ("cacheback/stages/",)),
    ("engine and core", ("cacheback/engine/", "cacheback/core/", "cacheback/_semantic_cache.py")),
)


def area(stack: str) -> str:
    for name, marks in AREAS:
        if any(m in stack for m in marks):
            return name
    return "event loop and threads"


def spy_breakdown(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(busy samples, busy samples outside onnxruntime by leaf frame, the same by area) of
    py-spy's raw output."""
    busy = 0
    outside: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1] if frames else "?"
        if any(w in leaf for w in WAITS):
            continue
        busy += int(n)
        if "onnxruntime" not in stack:
            outside[leaf] += int(n)
            areas[area(stack)] += int(n)
    return busy, outside, areas


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1000, help=f"at most {len(questions(10**6))}")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--spy", action="store_true", help="also profile the window with py-spy")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--threads", action="store_true", help="also split the CPU by thread and time the guard")
    ap.add_argument("--raw", type=Path, default=None, help="keep py-spy's raw output here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        if not args.spy:
            anyio.run(load, args.entries, args.seconds, args.concurrency, d, args.threads)
            return
        spy = shutil.which("py-spy")
        if spy is None:
            raise SystemExit("py-spy is not installed (pip install py-spy)")
        raw = Path(d) / "prof.txt"
        child = [sys.executable, __file__, "--entries", str(args.entries), "--seconds", str(args.seconds),
                 "--concurrency", str(args.concurrency)]
        # The fill embeds every entry: record the load alone, attaching once it begins.
        with subprocess.Popen(child, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "ready":
                    break
            spied = subprocess.run(
                [spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw),
                 "--duration", str(max(1, int(args.seconds) - 1)), "--pid", str(proc.pid)],
                capture_output=True, text=True, check=False,
            )
            print(proc.stdout.read().strip())
        if spied.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed:\n{spied.stderr[-2000:]}")
        if args.raw is not None:
            shutil.copyfile(raw, args.raw)
        busy, outside, areas = spy_breakdown(raw)
        print(f"spy_busy_samples {busy}")
        print(f"spy_share_outside_onnxruntime {sum(outside.values()) / max(1, busy):.3f}")
        for name, n in areas.most_common():
            print(f"  {n / max(1, busy):6.3f}  {name}")
        print("outside onnxruntime, by innermost frame:")
        for frame, n in outside.most_common(args.top):
            print(f"  {n / max(1, busy):6.3f}  {frame}")


if __name__ == "__main__":
    main()
