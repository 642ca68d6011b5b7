"""The runner: wires stages with bounded anyio memory object streams.

Every stage has one inbox of ``queue_size`` items (backpressure: a full inbox makes the
sender wait). Each runner task owns clones of the send streams it may route to and
closes them when its inbox ends, so closing the pipeline's own senders drains the
graph stage by stage, in order. The runner, not the stages, does tracing (through an
observer), error handling and queueing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cacheback._logging import get_logger

from ..core._batching import BatchPolicy, batch_wait
from ..core._errors import EngineClosed
from ..core._job import Job
from ..core._stage import Stage
from ..core._types import Outcome, Tier

log = get_logger("cacheback.pipeline")

T = TypeVar("T")


class Observer(Protocol):
    def job_started(self, job: Job) -> None: ...

    def stage_done(
        self, stage: str, jobs: Sequence[Job], t0: float, t1: float, error: BaseException | None
    ) -> None: ...

    def job_finished(self, job: Job) -> None: ...


class Sink(Protocol):
    """A batch consumer at the end of the graph (the persister)."""

    name: str

    @property
    def policy(self) -> BatchPolicy: ...

    async def write(self, items: Sequence[Any]) -> None:
        """Consume a batch; an empty batch is the last call, when the pipeline closes."""
        ...


async def collect(first: T, inbox: MemoryObjectReceiveStream[T], policy: BatchPolicy) -> list[T]:
    """First item plus whatever is queued, waiting briefly for more only under load."""
    batch = [first]
    started = time.perf_counter()
    backlog = inbox.statistics().current_buffer_used > 0
    while len(batch) < policy.max_batch:
        try:
            batch.append(inbox.receive_nowait())
            continue
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            break
        wait = batch_wait(policy, len(batch), backlog, time.perf_counter() - started)
        if wait <= 0:
            break
        with anyio.move_on_after(wait):
            try:
                batch.append(await inbox.receive())
            except anyio.EndOfStream:
                break
    return batch


@dataclass(slots=True)
class _Lane(Generic[T]):
    send: MemoryObjectSendStream[T]
    receive: MemoryObjectReceiveStream[T]


class Pipeline:
    """Runs ``stages`` as a graph: each job goes to ``job.route`` or the default successor."""

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        edges: Mapping[str, Sequence[str]],
        observer: Observer,
        sink: Sink | None = None,
        queue_size: int = 256,
        concurrency: int = 256,
    ) -> None:
        self._stages = {s.name: s for s in stages}
        self._order = [s.name for s in stages]
        self._edges = {name: list(edges.get(name, ())) for name in self._order}
        self._observer = observer
        self._sink = sink
        self._queue_size = queue_size
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._lanes: dict[str, _Lane[Job]] = {}
        self._sink_lane: _Lane[Any] | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._open = False
        self._active = 0  # jobs submitted and not finished
        self._idle: anyio.Event | None = None
        self._afters_started = 0  # runs of work after answers (see _run_after)
        self._afters_ended = 0
        self._settled: anyio.Event | None = None
        self.cache_failures = 0

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Pipeline:
        for name in self._order:
            send, recv = anyio.create_memory_object_stream[Job](self._queue_size)
            self._lanes[name] = _Lane(send, recv)
        if self._sink is not None:
            ssend, srecv = anyio.create_memory_object_stream[Any](self._queue_size * 4)
            self._sink_lane = _Lane(ssend, srecv)
        self._stack = AsyncExitStack()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        for name in self._order:
            outs = {n: self._lanes[n].send.clone() for n in self._edges[name]}
            sink_send = self._sink_lane.send.clone() if self._sink_lane else None
            self._tg.start_soon(
                self._run_stage, self._stages[name], self._lanes[name].receive, outs, sink_send
            )
        if self._sink is not None and self._sink_lane is not None:
            self._tg.start_soon(self._run_sink, self._sink, self._sink_lane.receive)
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting jobs, let in-flight ones finish, flush the sink."""
        if not self._open:
            return
        self._open = False
        for lane in self._lanes.values():
            lane.send.close()
        if self._sink_lane is not None:
            self._sink_lane.send.close()
        assert self._stack is not None
        await self._stack.aclose()
        for stage in self._stages.values():
            await stage.aclose()

    # -- intake --------------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Queue a job (waits while the first inbox is full) and wait until it is done."""
        if not self._open:
            raise EngineClosed("the cache engine is closed")
        if self.settle_now(job):
            self.complete(job)
            # Still a checkpoint, as every await of the engine: other tasks get their turn
            # (a loop of hits cannot starve them) and a cancelled caller stops here.
            await anyio.lowlevel.checkpoint()
            return
        self._observer.job_started(job)
        self._active += 1
        try:
            try:
                await self._lanes[self._order[0]].send.send(job)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
                raise EngineClosed("the cache engine is closed") from exc
            try:
                await job.done.wait()
            except BaseException:  # cancelled: nobody will read the answer, so do not buy it
                job.abandon()
                raise
        finally:
            self._active -= 1
            if self._active == 0 and self._idle is not None:
                self._idle.set()

    def settle_now(self, job: Job) -> bool:
        """The first stage's answer when it needs no waiting (a repeat from memory), in the
        submitting task or on any thread: no hop to the stage's task. Traced as that stage;
        ``complete`` (on the loop) finishes the job."""
        stage = self._stages[self._order[0]]
        t0 = time.perf_counter()
        try:
            settled = stage.settle_now(job)
        except Exception:  # the stage's own run meets it again, and routes it as a failure
            job.outcome = None
            return False
        if not settled:
            return False
        self._observer.job_started(job)
        self._observer.stage_done(stage.name, (job,), t0, time.perf_counter(), None)
        return True

    def complete(self, job: Job) -> None:
        """Finish a job ``settle_now`` settled (metrics, the request's span); on the loop."""
        self._complete(job)

    async def idle(self) -> None:
        """Wait until no submitted job is waiting for its answer."""
        while self._active:
            self._idle = anyio.Event()
            await self._idle.wait()

    def sink_nowait(self, item: Any) -> bool:
        """Hand an item to the sink without waiting; False if it is full or closed."""
        if self._sink_lane is None or not self._open:
            return False
        try:
            self._sink_lane.send.send_nowait(item)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def sink(self, item: Any) -> None:
        if self._sink_lane is None:
            raise EngineClosed("no sink")
        try:
            await self._sink_lane.send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise EngineClosed("the cache engine is closed") from exc

    def queue_depth(self, stage: str) -> int:
        lane = self._lanes.get(stage)
        return lane.receive.statistics().current_buffer_used if lane is not None else 0

    def queue_depths(self) -> dict[str, int]:
        depths = {name: self.queue_depth(name) for name in self._lanes}
        if self._sink_lane is not None and self._sink is not None:
            depths[self._sink.name] = self._sink_lane.receive.statistics().current_buffer_used
        return depths

    # -- runners -------------------------------------------------------------------

    async def _run_stage(
        self,
        stage: Stage,
        inbox: MemoryObjectReceiveStream[Job],
        outs: dict[str, MemoryObjectSendStream[Job]],
        sink: MemoryObjectSendStream[Any] | None,
    ) -> None:
        async with AsyncExitStack() as stack:
            for out in outs.values():
                stack.enter_context(out)
            if sink is not None:
                stack.enter_context(sink)
            stack.enter_context(inbox)
            async with anyio.create_task_group() as tg:
                async for first in inbox:
                    await self._dispatch(stage, first, inbox, outs, tg)
                    # Waiting for the next job must not keep the last one (and through its
                    # call the caller's client) alive: a dropped client is collected.
                    del first

    async def _dispatch(
        self,
        stage: Stage,
        first: Job,
        inbox: MemoryObjectReceiveStream[Job],
        outs: dict[str, MemoryObjectSendStream[Job]],
        tg: TaskGroup,
    ) -> None:
        batch = await collect(first, inbox, stage.policy)
        if stage.concurrent:
            for job in batch:
                tg.start_soon(self._step_limited, stage, [job], outs)
        else:
            await self._step(stage, batch, outs)

    async def _step_limited(
        self, stage: Stage, batch: list[Job], outs: dict[str, MemoryObjectSendStream[Job]]
    ) -> None:
        async with self._limiter:
            await self._step(stage, batch, outs)

    async def _step(
        self, stage: Stage, batch: list[Job], outs: dict[str, MemoryObjectSendStream[Job]]
    ) -> None:
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            await stage.process(batch)
        except Exception as exc:
            error = exc
            for job in batch:
                self._fail(stage, job, exc)
        self._observer.stage_done(stage.name, batch, t0, time.perf_counter(), error)
        afters = []
        for job in batch:
            if job.after is not None:
                afters.append(job.after)
                job.after = None
        try:
            for job in batch:
                await self._forward(stage, job, outs)
        finally:
            # Even if forwarding is cancelled (waiting for room downstream): an answer the
            # provider gave must still be stored, and a follower waiting for it released.
            if afters:
                await self._run_after(afters)

    async def _run_after(self, afters: list[Callable[[], None]]) -> None:
        """Work the caller must not wait for (storing an answer), once the caller is woken:
        one (shielded) checkpoint lets its task take the answer first; the work then runs
        before anything the caller does next reaches a stage (the loop runs ready tasks in
        order). ``settled()`` waits for it (a flush, stats)."""
        self._afters_started += 1
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            for work in afters:
                try:
                    work()
                except Exception as exc:  # storing must never break the pipeline
                    self.cache_failures += 1
                    log.error("work after an answer failed", error=repr(exc))
        finally:
            # Each run waits one checkpoint, so they end in the order they started.
            self._afters_ended += 1
            if self._settled is not None:
                self._settled.set()
                self._settled = None

    async def settled(self) -> None:
        """Wait until the work after the answers returned so far has run (their answers
        are queued for writing, their usage counted); later answers are not waited for."""
        target = self._afters_started
        while self._afters_ended < target:
            if self._settled is None:
                self._settled = anyio.Event()
            await self._settled.wait()

    def _fail(self, stage: Stage, job: Job, exc: BaseException) -> None:
        if not stage.cache_stage:
            job.error = exc
            return
        # A cache failure must never reach the caller: go around the cache.
        self.cache_failures += 1
        job.degraded = stage.name
        log.warning("cache stage failed; passing through", stage=stage.name, error=repr(exc))
        job.outcome = None
        if job.call is not None:
            job.route = "upstream"
        else:
            job.outcome = Outcome(
                Tier.MISS, scope=job.scope, query_hash=job.query_hash, detail=f"cache error in {stage.name}"
            )

    async def _forward(self, stage: Stage, job: Job, outs: dict[str, MemoryObjectSendStream[Job]]) -> None:
        if job.finished:
            return
        if job.outcome is not None or job.error is not None:
            self._complete(job)
            return
        target = job.route or (self._edges[stage.name][0] if self._edges[stage.name] else None)
        job.route = None
        out = outs.get(target) if target is not None else None
        if out is None:
            job.error = RuntimeError(f"stage {stage.name} routed to unknown stage {target!r}")
            self._complete(job)
            return
        try:
            try:
                # Room in the inbox: hand it over without a trip through the event loop
                # (send() yields first), so a batch moves on in one go.
                out.send_nowait(job)
            except anyio.WouldBlock:
                await out.send(job)  # full: wait for room (backpressure)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            job.error = EngineClosed("the cache engine closed during the request")
            self._complete(job)

    def _complete(self, job: Job) -> None:
        job.release()
        self._observer.job_finished(job)
        job.finish()

    async def _run_sink(self, sink: Sink, inbox: MemoryObjectReceiveStream[Any]) -> None:
        with inbox:
            async for first in inbox:
                # Write-behind comes second: the request that handed this item over is
                # woken in the same loop turn, so let it answer its caller first.
                await anyio.lowlevel.checkpoint()
                batch = await collect(first, inbox, sink.policy)
                t0 = time.perf_counter()
                try:
                    await sink.write(batch)
                except Exception as exc:
                    self.cache_failures += 1
                    log.error("persister write failed", items=len(batch), error=repr(exc))
                self._observer.stage_done(sink.name, (), t0, time.perf_counter(), None)
            try:
                await sink.write(())  # the last call: what the sink gathered is written now
            except Exception as exc:
                self.cache_failures += 1
                log.error("persister final write failed", error=repr(exc))
