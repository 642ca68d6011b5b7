"""A loop-lag monitor for tests: a task that sleeps 10 ms in a loop and records how much
later than asked it woke up. The largest lag is how long something held the event loop."""

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

    @property
    def max_s(self) -> float:
        return max(self.lags, default=0.0)

    def check(self, limit_s: float = MAX_LAG_S) -> None:
        assert self.lags, "the monitor never ran"
        assert self.max_s <= limit_s, (
            f"the event loop was held {self.max_s * 1000:.0f} ms (limit {limit_s * 1000:.0f} ms)"
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
