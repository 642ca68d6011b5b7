"""synthesizer: compiles the top cached answers into a fresh one with a cheap model.

Declined, failed, slow or empty synthesis routes the job on to upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from ..engine._job import Job
from ..engine._ports import LLM
from ..engine._settings import Settings
from ..engine._stage import Stage
from ..engine._synthesis import build_synthesis_messages, is_declined
from ..engine._types import Outcome, Tier


class Synthesizer(Stage):
    name = "synthesizer"
    concurrent = True

    def __init__(
        self, llm: LLM, settings: Callable[[], Settings], *, budget_s: float, max_tokens: int
    ) -> None:
        self._llm = llm
        self._settings = settings
        self._budget_s = budget_s
        self._max_tokens = max_tokens
        self.declined = 0
        self.failed = 0

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self._one(job)

    async def _one(self, job: Job) -> None:
        s = self._settings()
        assert job.handler is not None
        messages = build_synthesis_messages(job.request.query, job.candidates, s.synthesis_top_k)
        job.trace["synthesis_prompt"] = messages
        try:
            with anyio.fail_after(self._budget_s):
                reply = await self._llm.complete(
                    messages, max_tokens=self._max_tokens, timeout=self._budget_s
                )
        except Exception as exc:
            self.failed += 1
            job.trace["synthesis"] = f"failed: {type(exc).__name__}"
            job.route = "upstream"
            return
        if is_declined(reply.text):
            self.declined += 1
            job.trace["synthesis"] = "declined"
            job.route = "upstream"
            return
        usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        job.trace["synthesis"] = "ok"
        job.trace["synthesis_usage"] = usage
        job.reply = await job.handler.synthesized(reply.text, None, usage)
        job.outcome = Outcome(
            Tier.SYNTHESIS,
            similarity=job.candidates[0].similarity if job.candidates else None,
            candidates=tuple(job.candidates[: s.synthesis_top_k]),
            scope=job.scope,
            query_hash=job.query_hash,
            guard_reasons=job.guard_reasons,
        )
