"""The runner's work after an answer (storing it) runs even when forwarding is cancelled."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from cacheback.core._job import Job
from cacheback.core._stage import Stage
from cacheback.core._types import LookupRequest
from cacheback.engine._pipeline import Pipeline

pytestmark = pytest.mark.anyio


class _Quiet:
    def job_started(self, job: Job) -> None:
        pass

    def stage_done(
        self, stage: str, jobs: Sequence[Job], t0: float, t1: float, error: BaseException | None
    ) -> None:
        pass

    def job_finished(self, job: Job) -> None:
        pass


class _First(Stage):
    """Gives every job work to run after it, then passes it on."""

    name = "first"

    def __init__(self, ran: list[str], two_ran: anyio.Event) -> None:
        self.ran = ran
        self.two_ran = two_ran

    def _record(self, query_hash: str) -> None:
        self.ran.append(query_hash)
        if len(self.ran) == 2:
            self.two_ran.set()

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            job.after = lambda q=job.query_hash: self._record(q)


class _Stuck(Stage):
    """Never finishes a batch: its inbox fills and the stage before it waits for room."""

    name = "stuck"

    async def process(self, jobs: Sequence[Job]) -> None:
        await anyio.sleep_forever()


def _job(n: int) -> Job:
    return Job(request=LookupRequest(query=f"question {n}"), namespace="ns", scope="s", query_hash=f"h{n}")


async def test_work_after_an_answer_runs_when_forwarding_is_cancelled() -> None:
    ran: list[str] = []
    two_ran = anyio.Event()
    pipeline = Pipeline(
        [_First(ran, two_ran), _Stuck()], edges={"first": ["stuck"]}, observer=_Quiet(), queue_size=1
    )
    with anyio.CancelScope() as scope:
        async with pipeline, anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(pipeline.submit, _job(n))
            # Job 0 is stuck in the second stage, job 1 fills its inbox, and the first stage
            # waits for room to forward job 2 (its work after has not run yet).
            with anyio.fail_after(10):
                await two_ran.wait()
            await anyio.sleep(0.05)
            assert ran == ["h0", "h1"]
            assert pipeline.queue_depth("first") == 0 and pipeline.queue_depth("stuck") == 1
            scope.cancel()
    assert ran == ["h0", "h1", "h2"]
