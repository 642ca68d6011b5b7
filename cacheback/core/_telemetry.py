"""Tracing and logging as an observer of the runner (stages never trace themselves).

Each request gets a root span ``cacheback.request`` carrying the tier, similarity and
entry id; every stage a job passes through adds a child span ``cacheback.<stage>`` with
its real start and end times. Logs never contain prompt text unless ``log_content``.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from cacheback._logging import get_logger

from ._job import Job
from ._stats import Stats

log = get_logger("cacheback.engine")
_tracer = trace.get_tracer("cacheback")


def _ns(perf: float, job: Job) -> int:
    # Spans need wall-clock nanoseconds; stages time themselves with perf_counter.
    return int((job.now + (perf - job.started)) * 1e9)


class TracingObserver:
    def __init__(self, stats: Stats, *, log_content: bool = False) -> None:
        self._stats = stats
        self._log_content = log_content

    def job_started(self, job: Job) -> None:
        job.span = _tracer.start_span(
            "cacheback.request",
            start_time=int(job.now * 1e9),
            attributes={"cacheback.namespace": job.namespace, "cacheback.scope": job.scope},
        )

    def stage_done(
        self, stage: str, jobs: Sequence[Job], t0: float, t1: float, error: BaseException | None
    ) -> None:
        for job in jobs:
            if job.span is None or not job.span.is_recording():
                continue
            ctx = trace.set_span_in_context(job.span)
            span = _tracer.start_span(f"cacheback.{stage}", context=ctx, start_time=_ns(t0, job))
            span.set_attribute("cacheback.batch_size", len(jobs))
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end(end_time=_ns(t1, job))

    def job_finished(self, job: Job) -> None:
        latency = job.elapsed_ms()
        outcome = job.outcome
        if job.degraded is not None:
            self._stats.count("cache_errors")
        if outcome is not None:
            self._stats.record(outcome.tier, latency)
        span = job.span
        if span is not None and span.is_recording():
            if outcome is not None:
                span.set_attribute("cacheback.tier", outcome.tier.value)
                if outcome.similarity is not None:
                    span.set_attribute("cacheback.similarity", float(outcome.similarity))
                if outcome.entry is not None:
                    span.set_attribute("cacheback.entry_id", outcome.entry.id)
                if outcome.guard_reasons:
                    span.set_attribute("cacheback.guard_reasons", list(outcome.guard_reasons))
            if job.degraded:
                span.set_attribute("cacheback.degraded_stage", job.degraded)
            if job.error is not None:
                span.record_exception(job.error)
                span.set_status(Status(StatusCode.ERROR, type(job.error).__name__))
            span.end(end_time=int((job.now + latency / 1000.0) * 1e9))
        if outcome is not None and log.debugging:
            fields: dict[str, object] = {
                "tier": outcome.tier.value,
                "latency_ms": round(latency, 3),
                "entry_id": outcome.entry_id,
            }
            if self._log_content:
                fields["query"] = job.request.query
            log.debug("cacheback.request", **fields)
