"""Keep the model warm between bursts: a tiny inference every few ms while traffic is recent.

After a few hundred ms without inference, the next embedding costs about 2.8x a warm
one: the model's weights have left the CPU caches and the idle cores sleep deeper.
Bursty traffic pays that on most lookups. A background inference over three tokens
reads every weight matrix (each layer multiplies by all of it whatever the length) at a
small cost, so the weights stay cached while requests are likely.

It runs only while the process is *recently active*: after ``idle_limit_s`` without a
real embedding the thread blocks on an event and costs nothing until the next one. A
tick is skipped while a real embedding runs or ran within the interval (that keeps the
weights warm by itself), so ticks and real work seldom overlap; when they do, the
overlap is one tiny inference. The thread belongs to the process that started it: a
forked child starts its own on its first embedding (see ``_minilm._forked``).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Literal

from ..._logging import get_logger

__all__ = ["KeepWarm", "warm_action"]

log = get_logger("cacheback.embedder")

Action = Literal["tick", "wait", "sleep"]


def warm_action(
    now: float, last_real: float, last_any: float, busy: int, interval_s: float, idle_limit_s: float
) -> Action:
    """What the keep-warm thread does now.

    ``sleep``: idle for longer than the limit, block until the next real embedding;
    ``wait``: a real embedding runs, or some inference ran within the interval;
    ``tick``: run one tiny inference.
    """
    if now - last_real >= idle_limit_s and busy == 0:
        return "sleep"
    if busy > 0 or now - last_any < interval_s:
        return "wait"
    return "tick"


class KeepWarm:
    """Calls ``tick`` every ``interval_s`` while a real embedding ran within ``idle_limit_s``."""

    def __init__(
        self,
        tick: Callable[[], None],
        *,
        interval_s: float,
        idle_limit_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or idle_limit_s <= 0:
            raise ValueError("interval_s and idle_limit_s must be positive")
        self._tick = tick
        self._interval = interval_s
        self._idle_limit = idle_limit_s
        self._clock = clock
        self.ticks = 0  # inferences run by the thread (for tests and benchmarks)
        self.enabled = True  # False parks the thread at its next wake-up (benchmarks compare)
        self._reset()
        _ALL.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self._last_real = self._last_any = self._clock()

    # -- called around every real embedding --------------------------------

    def begin(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread does not exist here
            self._reset()
        with self._guard:
            self._busy += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="cacheback-keep-warm", daemon=True)
                self._thread.start()
        self._wake.set()

    def end(self) -> None:
        now = self._clock()
        with self._guard:
            self._busy = max(0, self._busy - 1)
            self._last_real = self._last_any = now

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout=1.0)

    @property
    def parked(self) -> bool:
        """No thread, or one blocked until the next real embedding: it costs nothing."""
        return self._thread is None or not self._wake.is_set()

    # -- the thread -------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._guard:
                now = self._clock()
                action = warm_action(
                    now, self._last_real, self._last_any, self._busy, self._interval, self._idle_limit
                )
                if not self.enabled:
                    action = "sleep"
                if action == "sleep":
                    self._wake.clear()
            if action == "sleep":
                self._wake.wait()
                continue
            if action == "tick":
                try:
                    self._tick()
                except Exception as exc:  # a failing tick must not kill the thread or spam the log
                    log.warning("keep-warm inference failed; keep-warm stops", error=repr(exc))
                    return
                self.ticks += 1
                with self._guard:
                    self._last_any = self._clock()
            self._stop.wait(self._interval)


_ALL: weakref.WeakSet[KeepWarm] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At exit, before the sessions are torn down: a daemon thread still inside
    onnxruntime while its session is destroyed aborts the process."""
    for keep_warm in list(_ALL):
        keep_warm.close()
