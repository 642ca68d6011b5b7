"""tier_router: applies the pure routing decision and sends the job on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._routing import VerbatimRule, route
from ..core._settings import Settings
from ..core._stage import Stage
from ..core._types import Tier


class TierRouter(Stage):
    policy = BatchPolicy(max_batch=64, max_wait_s=0.0)  # drain what is queued, never wait
    name = "tier_router"

    def __init__(
        self, settings: Callable[[], Settings], rule: Callable[[], VerbatimRule], *, can_synthesize: bool
    ) -> None:
        self._settings = settings
        self._rule = rule
        self._can_synthesize = can_synthesize

    async def process(self, jobs: Sequence[Job]) -> None:
        s = self._settings()
        rule = self._rule()
        for job in jobs:
            # Engine-only lookups report synthesis candidates; clients must ask for the tier.
            wants = job.request.want_synthesis or job.call is None
            decision = route(
                job.request.query,
                job.candidates if job.request.read else [],
                similarity_threshold=s.similarity_threshold,
                synthesis_threshold=s.synthesis_threshold,
                synthesis_mode=s.synthesis_mode if wants else "off",
                verbatim_rule=rule,
            )
            job.guard_reasons = decision.guard_reasons
            job.candidates = list(decision.candidates)
            if decision.tier is Tier.VERBATIM and decision.best is not None:
                best = decision.best
                job.settle(Tier.VERBATIM, similarity=best.similarity, entry=best.entry)
            elif job.call is None:
                top = decision.candidates[0].similarity if decision.candidates else None
                job.settle(decision.tier, similarity=top)
            elif decision.tier is Tier.SYNTHESIS and self._can_synthesize:
                job.route = "synthesizer"
            else:
                job.route = "upstream"
