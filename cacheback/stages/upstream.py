"""upstream: the real provider call, with identical concurrent misses coalesced into one."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from ..core._hotcache import HotCache
from ..core._job import Commit, Job, Reply, coalescing_key
from ..core._stage import Stage
from ..core._types import Tier


@dataclass(eq=False, slots=True)
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Reply | None = None
    error: BaseException | None = None
    followers: int = 0


class Upstream(Stage):
    name = "upstream"
    concurrent = True
    cache_stage = False  # provider errors belong to the caller

    def __init__(self, make_commit: Callable[[Job], Commit], hot: HotCache | None = None) -> None:
        self._make_commit = make_commit
        self._hot = hot
        self._flights: dict[tuple[str, str], _Flight] = {}
        self.coalesced = 0

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self._one(job)

    async def _one(self, job: Job) -> None:
        handler = job.handler
        if handler is None:
            job.settle(Tier.MISS)
            return
        if job.abandoned:
            job.settle(Tier.MISS, detail="the caller stopped waiting")
            return
        top = job.candidates[0].similarity if job.candidates else None
        tier = Tier.UPSTREAM if job.request.cacheable else Tier.BYPASS
        key = self._flight_key(job)
        # An identical request finished while this one was on its way: use its answer.
        if key is not None and self._hot is not None and job.settle_from_memory(self._hot, time.time()):
            return
        flight = self._flights.get(key) if key is not None else None
        if flight is not None:
            flight.followers += 1
            self.coalesced += 1
            await flight.done.wait()
            job.trace["coalesced"] = True
            if flight.error is not None:
                job.error = flight.error
                return
            job.reply = flight.reply
            job.settle(tier, similarity=top)
            return
        if key is not None:
            flight = _Flight()
            self._flights[key] = flight
        commit = self._make_commit(job)
        try:
            reply = await handler.upstream(commit)
        except BaseException as exc:
            if flight is not None:
                flight.error = exc
                flight.done.set()
            raise
        finally:
            if key is not None:
                self._flights.pop(key, None)
        if flight is not None:
            flight.reply = reply
            flight.done.set()
        if reply.answer is not None and not reply.deferred:
            commit(reply.answer, reply.payload)
        job.reply = reply
        job.settle(tier, similarity=top)

    @staticmethod
    def _flight_key(job: Job) -> tuple[str, str] | None:
        if job.handler is None:
            return None
        return coalescing_key(job.request, job.scope, job.query_hash, streaming=job.handler.streaming)
