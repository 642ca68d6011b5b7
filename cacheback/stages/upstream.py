"""upstream: the one real provider call of a miss, shared by identical concurrent misses.

This stage is the only place that calls the provider, and the only place that knows who
waits for a call: identical misses share one call (a flight), a call whose callers all
left is cancelled (nobody would read it), and closing cancels what is still running after
its grace. It stores what it saw: a plain answer at once, a stream once it has ended
normally (its events are read as they pass to the caller).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..core._call import Answer, EventReader, Streamed
from ..core._errors import UpstreamCancelled
from ..core._hotcache import HotCache
from ..core._job import Job, coalescing_key
from ..core._stage import Stage, StageContext
from ..core._types import Tier
from .normalize import settle_written

#: Stores (and accounts) what a job's upstream call answered; None: nothing to store.
Store = Callable[[Job, "Answer | None"], None]


@dataclass(eq=False, slots=True)
class _Flight:
    """One upstream call and the jobs waiting for it."""

    waiting: set[Job] = field(default_factory=set)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    response: Any = None
    answer: Answer | None = None
    error: BaseException | None = None

    def join(self, job: Job) -> None:
        self.waiting.add(job)
        job.on_abandon = self.leave

    def leave(self, job: Job) -> None:
        self.waiting.discard(job)
        if not self.waiting:
            self.scope.cancel()  # every caller left: nobody would read the answer


class Upstream(Stage):
    name = "upstream"
    concurrent = True
    cache_stage = False  # provider errors belong to the caller

    def __init__(self, ctx: StageContext) -> None:
        self._store: Store = ctx.store_answer
        self._hot: HotCache | None = ctx.hot
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._running: set[_Flight] = set()
        self._closing = False
        self.coalesced = 0

    def cancel_calls(self) -> None:
        """Closing: cancel every call still running, and any started from now on."""
        self._closing = True
        for flight in self._running:
            flight.scope.cancel()

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self._one(job)

    async def _one(self, job: Job) -> None:
        call = job.call
        if call is None:
            job.settle(Tier.MISS)
            return
        if job.abandoned:
            job.settle(Tier.MISS, detail="the caller stopped waiting")
            return
        top = job.candidates[0].similarity if job.candidates else None
        tier = Tier.UPSTREAM if job.request.cacheable else Tier.BYPASS
        key = coalescing_key(job.request, job.scope, job.query_hash, streaming=call.streaming)
        # An identical request finished while this one was on its way: use its answer.
        if key is not None and self._hot is not None and job.settle_from_memory(self._hot, time.time()):
            await settle_written(job, self._hot)  # its real entry id, once written
            return
        flight = self._flights.get(key) if key is not None else None
        if flight is not None:
            await self._follow(job, flight)
            if job.error is None:
                job.settle(tier, similarity=top)
            return
        flight = _Flight()
        flight.join(job)
        if key is not None:
            self._flights[key] = flight
        self._running.add(flight)
        landed = True
        try:
            landed = await self._call(job, flight, key)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            job.on_abandon = None
            if landed:
                self._land(flight, key)
        job.settle(tier, similarity=top)

    def _land(self, flight: _Flight, key: tuple[str, str] | None) -> None:
        """The flight is over: later identical requests start their own (or find the
        answer stored), and its followers get what it answered."""
        if key is not None and self._flights.get(key) is flight:
            del self._flights[key]
        self._running.discard(flight)
        flight.done.set()

    async def _follow(self, job: Job, flight: _Flight) -> None:
        flight.join(job)
        self.coalesced += 1
        try:
            await flight.done.wait()
        finally:
            flight.waiting.discard(job)
            job.on_abandon = None
        job.trace["coalesced"] = True
        if flight.error is not None:
            job.error = flight.error
            return
        job.response, job.answer = flight.response, flight.answer

    async def _call(self, job: Job, flight: _Flight, key: tuple[str, str] | None) -> bool:
        """Make the call. False: a plain answer came back, and reading it for the cache,
        storing it and landing the flight are left to ``job.after``, which the runner runs
        once the caller has its response (so none of it delays the caller)."""
        assert job.call is not None
        early, job.early = job.early, None
        with flight.scope:
            if self._closing or job.abandoned:
                flight.scope.cancel()  # closing, or the caller left before the call started
            response = await (early.send() if early is not None else job.call.send())
        if flight.scope.cancelled_caught:
            why = "the engine closed" if self._closing else "its caller stopped waiting"
            raise UpstreamCancelled(f"the upstream call was cancelled: {why}")
        job.trace["answered"] = True
        if isinstance(response, Streamed):
            reader = job.call.reader()
            events = response.events
            read = (
                _read_async(events, reader, job, self._store)
                if hasattr(events, "__aiter__")
                else (_read_sync(events, reader, job, self._store))
            )
            job.response = flight.response = Streamed(response.response, read)
            return True
        job.response = flight.response = response
        # The caller may drop the job's call and response once it has its answer: the work
        # after holds what it needs. Until it has run, the flight stays open, so an identical
        # request arriving meanwhile follows it instead of calling again.
        extract, store = job.call.extract, self._store

        def after() -> None:
            try:
                answer, usage = extract(response)
                job.answer = flight.answer = answer
                job.usage.update(usage)
                store(job, answer)
            finally:
                self._land(flight, key)

        job.after = after
        return False


def _ended(reader: EventReader, job: Job, store: Store) -> None:
    answer, usage = reader.result()
    job.usage.update(usage)
    store(job, answer)


async def _read_async(events: Any, reader: EventReader, job: Job, store: Store) -> AsyncIterator[Any]:
    """The events as they come, read on their way; stored once the stream ended normally
    (closed early or failed: a partial answer is never stored)."""
    async for event in events:
        reader.feed(event)
        yield event
    _ended(reader, job, store)


def _read_sync(events: Iterator[Any], reader: EventReader, job: Job, store: Store) -> Iterator[Any]:
    """As ``_read_async``, for a blocking stream read on the caller's own thread."""
    for event in events:
        reader.feed(event)
        yield event
    _ended(reader, job, store)
