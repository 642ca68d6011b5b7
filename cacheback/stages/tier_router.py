"""tier_router: applies the pure routing decision and sends the job on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from ..core._batching import BatchPolicy
from ..core._job import Job
from ..core._routing import RouteDecision, VerbatimRule, route
from ..core._settings_sections import MatchingSettings, SynthesisSettings
from ..core._stage import Stage
from ..core._types import Candidate, Tier

#: Texts up to this many characters are judged on the event loop: the verbatim rule costs
#: about 0.1-0.2 ms for a question, less than a thread hop. A longer query or candidate is
#: judged on a worker thread, since the rule's text analysis grows with its input (the
#: shipped guard analyses at most 2,000 characters a text, still up to ~0.1 s a pair).
INLINE_CHARS = 300


def _is_large(query: str, candidates: Sequence[Candidate]) -> bool:
    return len(query) > INLINE_CHARS or any(len(c.entry.query) > INLINE_CHARS for c in candidates)


class TierRouter(Stage):
    policy = BatchPolicy(max_batch=64, max_wait_s=0.0)  # drain what is queued, never wait
    name = "tier_router"

    def __init__(
        self,
        matching: Callable[[], MatchingSettings],
        synthesis: Callable[[], SynthesisSettings],
        rule: Callable[[], VerbatimRule],
        *,
        can_synthesize: bool,
    ) -> None:
        self._matching = matching
        self._synthesis = synthesis
        self._rule = rule
        self._can_synthesize = can_synthesize
        # Large texts are judged one or two at a time, so they leave the loop and the
        # other requests' short texts alone.
        self._limiter = anyio.CapacityLimiter(2)

    async def process(self, jobs: Sequence[Job]) -> None:
        m, s = self._matching(), self._synthesis()
        rule = self._rule()
        for job in jobs:
            # Engine-only lookups report synthesis candidates; clients must ask for the tier.
            wants = job.request.want_synthesis or job.call is None
            query = job.request.query
            candidates = job.candidates if job.request.read else []

            def decide(
                query: str = query, candidates: Sequence[Candidate] = candidates, wants: bool = wants
            ) -> RouteDecision:
                return route(
                    query,
                    candidates,
                    similarity_threshold=m.similarity_threshold,
                    synthesis_threshold=s.synthesis_threshold,
                    synthesis_mode=s.synthesis_mode if wants else "off",
                    verbatim_rule=rule,
                )

            if _is_large(query, candidates):
                decision = await anyio.to_thread.run_sync(decide, limiter=self._limiter)
            else:
                decision = decide()
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
