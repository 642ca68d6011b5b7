"""Run a benchmark script under a garbage-collection watcher and print what the collector did.

    python loadtests/gc_watch.py loadtests/bench_clients.py --rounds 60 --misses 30
    python loadtests/gc_watch.py -m cacheback.proxy --port 8081 ...   (a module, like python -m)

The script runs in this process (as ``__main__``, with its own arguments); a callback on
``gc.callbacks`` times every collection. At exit it prints, after the script's own
figures, the number of automatic collections per generation, the total and longest
pause per generation, the collections asked for with ``gc.collect()`` (a freeze runs one)
apart, and the count of tracked objects (``gc.get_objects()``) and of frozen ones
(``gc.freeze()``). Lines are ``name value`` so ``loadtests/ab.py`` compares them; a base
checkout without this file can still be run under this tree's copy by giving its path.
Collections after ``mark()`` (or SIGUSR1), the script's measured part, are also
reported apart. With ``GC_WATCH_OUT=<file>`` the figures go to that file instead of stdout (how
``bench_proxy.py --gc`` reads the proxy process's). It asserts nothing.
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys
import threading
import time
from typing import Any

_started: list[float] = [0.0]
_counts = [0, 0, 0]
_total_ms = [0.0, 0.0, 0.0]
_max_ms = [0.0, 0.0, 0.0]
_pauses: list[list[float]] = [[], [], []]
_marked: list[int] | None = None  # how many pauses each generation had at mark()
_explicit = [0, 0.0, 0.0]  # gc.collect() calls (e.g. a freeze's): count, total and max ms
_in_collect = [False]
_collect = gc.collect


def _counted_collect(generation: int = 2) -> int:
    _in_collect[0] = True
    try:
        return _collect(generation)
    finally:
        _in_collect[0] = False


def _watch(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    gen = int(info["generation"])
    ms = (time.perf_counter() - _started[0]) * 1000
    if _in_collect[0]:
        _explicit[0] += 1
        _explicit[1] += ms
        _explicit[2] = max(_explicit[2], ms)
        return
    _counts[gen] += 1
    _total_ms[gen] += ms
    _max_ms[gen] = max(_max_ms[gen], ms)
    _pauses[gen].append(ms)


def mark(*_: object) -> None:
    """The measured part starts: pauses from here on are also reported apart
    (``gc_measured_*``). A script calls ``sys.modules["gc_watch"].mark()`` when it runs
    under the watcher; another process sends SIGUSR1."""
    global _marked
    _marked = [len(p) for p in _pauses]


def report(final: bool = True) -> str:
    lines = []
    if _marked is not None:
        for gen in range(3):
            after = _pauses[gen][_marked[gen] :]
            lines.append(f"gc_measured_gen{gen}_collections {len(after):10d}")
            lines.append(f"gc_measured_gen{gen}_max_ms {max(after, default=0.0):10.3f}")
        lines.append(f"gc_measured_gen2_total_ms {sum(_pauses[2][_marked[2] :]):10.3f}")
    for gen in range(3):
        lines.append(f"gc_gen{gen}_collections {_counts[gen]:10d}")
        lines.append(f"gc_gen{gen}_total_ms {_total_ms[gen]:10.3f}")
        lines.append(f"gc_gen{gen}_max_ms {_max_ms[gen]:10.3f}")
    lines.append(f"gc_explicit_collections {_explicit[0]:10d}")
    lines.append(f"gc_explicit_max_ms {_explicit[2]:10.3f}")
    if final:  # walking every object is itself a pause: not while the process is measured
        lines.append(f"gc_tracked_objects_at_exit {len(gc.get_objects()):10d}")
    lines.append(f"gc_frozen_objects_at_exit {gc.get_freeze_count():10d}")
    if final and os.environ.get("GC_WATCH_VERBOSE"):
        full = ", ".join(f"{p:.1f}" for p in _pauses[2])
        print(f"full collections (ms): {full}", file=sys.stderr)
    return "\n".join(lines) + "\n"


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _keep_writing(path: str) -> None:
    """A server killed by its own signal (uvicorn re-raises SIGTERM) never reaches the
    final report: the figures are rewritten every half second as well."""
    while True:
        time.sleep(0.5)
        _write(path, report(final=False))


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.modules["gc_watch"] = sys.modules[__name__]  # for mark(): this runs as __main__
    signal.signal(signal.SIGUSR1, mark)
    out = os.environ.get("GC_WATCH_OUT")
    if out:
        threading.Thread(target=_keep_writing, args=(out,), daemon=True).start()
    gc.callbacks.append(_watch)
    gc.collect = _counted_collect  # collections asked for are counted apart from automatic ones
    try:
        if sys.argv[1] == "-m":
            module = sys.argv[2]
            sys.argv = [module, *sys.argv[3:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(sys.argv[1])
            sys.argv = sys.argv[1:]
            sys.path[0] = os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
    finally:
        gc.callbacks.remove(_watch)
        sys.stdout.flush()
        if out:
            _write(out, report())
        else:
            sys.stdout.write(report())


if __name__ == "__main__":
    main()
