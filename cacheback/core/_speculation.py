"""Speculative upstream calls: pure decisions (``speculative_upstream``, engine/_speculation.py).

A lookup whose question a cheap test calls a clear miss sends its upstream call at once,
before its embedding; the lookup still runs in full, and a hit it finds after all takes
the call back (aborted on the wire). No answer depends on the test, only how soon a miss
starts and how many calls are taken back.
"""

from __future__ import annotations

from ._job import Job
from ._settings_sections import MatchingSettings, SynthesisSettings


def answer_floor(matching: MatchingSettings, synthesis: SynthesisSettings, *, can_synthesize: bool) -> float:
    """The lowest similarity at which a stored answer could still stand in for the
    provider's: the hit threshold, or the synthesis threshold when near-matches are
    compiled (per-entry thresholds only ever raise it)."""
    floor = matching.similarity_threshold
    if can_synthesize and synthesis.synthesis_mode != "off":
        floor = min(floor, synthesis.synthesis_threshold)
    return floor


def speculable(job: Job) -> bool:
    """A job whose upstream call may go out before its lookup ends: a cacheable request
    still waiting, whose call can be aborted on the wire (a call on a worker thread would
    run to its end, paid, if taken back) and was not already sent early."""
    call = job.call
    return (
        call is not None
        and call.abortable
        and job.request.cacheable
        and not job.finished
        and not job.abandoned
        and (job.early is None or not job.early.launched)
    )
