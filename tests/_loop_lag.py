"""A loop-lag monitor for tests: a task that sleeps 10 ms in a loop and records how much
later than asked it woke up. The largest lag is how long something held the event loop.

On a shared, overloaded machine the loop also wakes late when the process is simply not
scheduled (an idle loop showed 66 ms on 2 cores at load 12). :func:`idle_lag` measures
that noise first, so a test can fail on what its own work adds to it."""

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


@asynccontextmanager
async def loop_lag_monitor() -> AsyncIterator[LoopLag]:
    """Measure loop lag while the body runs (the caller calls ``check()``)."""
    lag = LoopLag()

    async def tick() -> None:
        while True:
            t0 = time.perf_counter()
            await anyio.sleep(TICK_S)
            lag.lags.append(time.perf_counter() - t0 - TICK_S)

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
