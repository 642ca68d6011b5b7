"""Count the thread hops and task hops of one client call: an exact hit and a miss, sync and
async, against the fake provider (own process).

    python loadtests/count_hops.py [--trace]

How it counts: a profile hook on every thread (``sys.setprofile``/``threading.setprofile``,
installed before any thread of the clients starts) watches the one measured client call.

* A *thread hop* is one thread handing work or a result to another, which wakes it. Every
  such hand-over in this code goes through one of three primitives, and each call of one
  is counted: ``loop.call_soon_threadsafe`` from another thread (a worker, a SQLite
  connection's thread or the caller handing something to an event loop),
  ``threading.Condition.notify`` (``notify_all`` calls it) with a thread waiting (a loop handing a
  result to a waiting caller through a ``concurrent.futures.Future``, a job to an anyio
  worker through its queue, or opening a parked call's gate), and ``SimpleQueue.put`` (a
  statement handed to a SQLite connection's thread, aiosqlite).
* A *task hop* is an asyncio task starting to run on a loop's thread after a different
  task ran there (loop callbacks that belong to no task are left out).

Work for later (the write-behind persister, its SQLite writes) is counted too when it
happens before the call returns. ``--trace`` prints each hand-over and each run of calls on
one thread and task, so what was counted can be read. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from cacheback import AsyncCachedOpenAI, CachedOpenAI
from cacheback.adapters.embedders import MiniLMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_server import fake_in_subprocess

Record = tuple[int, str, str]  # thread id, task name ('' outside a task), function


class Recorder:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.handoffs: list[tuple[int, str]] = []  # (from thread, how)
        self.on = False

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if not self.on:
            return
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            if type(owner).__name__ == "SimpleQueue" and arg.__name__ in ("put", "put_nowait"):
                self._handoff("SimpleQueue.put (to a SQLite connection's thread)")
            return
        if event != "call":
            return
        code = frame.f_code
        where = f"{Path(code.co_filename).stem}.{code.co_name}"
        if code.co_name == "call_soon_threadsafe":
            loop = frame.f_locals.get("self")
            if getattr(loop, "_thread_id", None) != threading.get_ident():
                self._handoff("call_soon_threadsafe (to an event loop)")
        elif code.co_name == "notify" and code.co_filename == threading.__file__:  # notify_all calls it
            cond = frame.f_locals.get("self")
            if getattr(cond, "_waiters", None):
                self._handoff("Condition.notify (to a waiting thread)")
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running on this thread
            task = None
        name = f"{task.get_name()}#{id(task):x}" if task is not None else ""
        self.records.append((threading.get_ident(), name, where))

    def _handoff(self, how: str) -> None:
        self.handoffs.append((threading.get_ident(), how))
        self.records.append((threading.get_ident(), "", f">> hand-over: {how}"))

    def install(self) -> None:
        """Before any thread of the clients starts: threads started later inherit the hook
        (Python 3.11 cannot add it to a running thread). It records only while ``on``."""
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)

    def __enter__(self) -> Recorder:
        self.records.clear()
        self.handoffs.clear()
        self.on = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.on = False


RECORDER = Recorder()


def segments(records: list[Record]) -> list[tuple[str, str, str, int]]:
    names = {t.ident: t.name for t in threading.enumerate()}
    out: list[tuple[str, str, str, int]] = []
    last: tuple[int, str] | None = None
    for ident, task, fn in records:
        key = (ident, task)
        if key != last or fn.startswith(">>"):
            out.append((names.get(ident, str(ident)), task, fn, 1))
            last = None if fn.startswith(">>") else key
        else:
            thread, t, first, n = out[-1]
            out[-1] = (thread, t, first, n + 1)
    return out


def task_hops(records: list[Record]) -> int:
    last: dict[int, str] = {}  # per thread: the task that ran there last
    hops = 0
    for ident, task, _ in records:
        if not task:
            continue
        if last.get(ident, task) != task:
            hops += 1
        last[ident] = task
    return hops


def report(label: str, rec: Recorder, trace: bool) -> None:
    print(f"{label:32s} thread_hops {len(rec.handoffs):3d}   task_hops {task_hops(rec.records):3d}")
    if trace:
        for thread, task, fn, n in segments(rec.records):
            calls = f"{n:6d} calls, from" if not fn.startswith(">>") else " " * 17
            print(f"    {thread:28.28s} {task:44.44s} {calls} {fn}")


def msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def sync_calls(base: str, emb: Any, trace: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        c = CachedOpenAI(base_url=base, api_key="sk-hops", max_retries=0, cache_dir=d, embedder=emb)
        call = c.chat.completions.create
        call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
        call(model="gpt-4o", messages=msg("Warm-up miss about rivers and their deltas"))
        c.cache.flush()
        call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
        time.sleep(1.2)  # the indexer and the engine's once-a-second work are done
        rec = RECORDER
        with rec:
            call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
        report("sync exact hit (memory)", rec, trace)
        c._cacheback.cache.engine.hot.bump()  # memory forgets it (as after a restart)
        time.sleep(1.2)
        with rec:
            call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
        report("sync exact hit (store)", rec, trace)
        time.sleep(1.2)
        with rec:
            call(model="gpt-4o", messages=msg("A question about volcanoes nobody asked before"))
        report("sync miss (scope has entries)", rec, trace)
        c.close()


async def async_calls(base: str, emb: Any, trace: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        async with AsyncCachedOpenAI(
            base_url=base, api_key="sk-hops", max_retries=0, cache_dir=d, embedder=emb
        ) as c:
            call = c.chat.completions.create
            await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            await call(model="gpt-4o", messages=msg("Warm-up miss about rivers and their deltas"))
            await c.cache.flush()
            await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            await anyio.sleep(1.2)
            rec = RECORDER
            with rec:
                await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            report("async exact hit (memory)", rec, trace)
            c._cacheback.cache.engine.hot.bump()  # memory forgets it (as after a restart)
            await anyio.sleep(1.2)
            with rec:
                await call(model="gpt-4o", messages=msg("How do I reverse a list in Python?"))
            report("async exact hit (store)", rec, trace)
            await anyio.sleep(1.2)
            with rec:
                await call(model="gpt-4o", messages=msg("A question about volcanoes nobody asked before"))
            report("async miss (scope has entries)", rec, trace)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", action="store_true", help="print every segment")
    ap.add_argument("--delay", type=float, default=0.05, help="the fake provider's answer delay")
    args = ap.parse_args()
    RECORDER.install()
    with fake_in_subprocess(args.delay) as base:
        emb = MiniLMEmbedder()
        emb.embed(["warm up"])
        sync_calls(base, emb, args.trace)
        anyio.run(async_calls, base, emb, args.trace)


if __name__ == "__main__":
    main()
