"""A loop-lag monitor for tests: a task that sleeps 10 ms in a loop and records how much
later than asked it woke up. The largest lag is how long something held the event loop.

On a shared, overloaded machine the loop also wakes late when its thread is simply not
scheduled (an idle loop showed 66 ms on 2 cores at load 12, and a 10 MB test 275 ms at
load 15). Where Linux reports it (``/proc/thread-self/schedstat``), the time the loop's
thread spent runnable but waiting for a CPU is taken out of each lag: what is left is time
the thread ran or was blocked, which is what holding the loop means. :func:`idle_lag`
measures the rest of the noise first, so a test can fail on what its own work adds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

TICK_S = 0.010
#: A test fails when the loop was held longer than this.
MAX_LAG_S = 0.100


@dataclass
class LoopLag:
    lags: list[float] = field(default_factory=list)
    noise_s: float = 0.0  # an idle loop's largest lag on this machine, if measured

    @property
    def max_s(self) -> float:
        return max(self.lags, default=0.0)

    def check(self, limit_s: float = MAX_LAG_S, noise_s: float = 0.0) -> None:
        """Fail when the loop was held longer than ``limit_s`` beyond the machine's own
        ``noise_s`` (the largest lag of an idle loop, see :func:`idle_lag`)."""
        assert self.lags, "the monitor never ran"
        assert self.max_s <= limit_s + noise_s, (
            f"the event loop was held {self.max_s * 1000:.0f} ms (limit {limit_s * 1000:.0f} ms"
            f" + {noise_s * 1000:.0f} ms of an idle loop on this machine)"
        )


_SCHEDSTAT = "/proc/thread-self/schedstat"


def runqueue_wait_s() -> float:
    """Seconds this thread has spent runnable but not running (0.0 where not reported)."""
    try:
        with open(_SCHEDSTAT) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@asynccontextmanager
async def loop_lag_monitor() -> AsyncIterator[LoopLag]:
    """Measure loop lag while the body runs (the caller calls ``check()``)."""
    lag = LoopLag()

    async def tick() -> None:
        while True:
            t0, w0 = time.perf_counter(), runqueue_wait_s()
            await anyio.sleep(TICK_S)
            starved = runqueue_wait_s() - w0
            lag.lags.append(max(0.0, time.perf_counter() - t0 - TICK_S - starved))

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        try:
            yield lag
        finally:
            tg.cancel_scope.cancel()


async def idle_lag(seconds: float = 1.0) -> float:
    """The largest lag of the monitor over an idle loop: the machine's own noise."""
    async with loop_lag_monitor() as lag:
        await anyio.sleep(seconds)
    return lag.max_s
