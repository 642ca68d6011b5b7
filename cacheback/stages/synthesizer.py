"""synthesizer: compiles the top cached answers into a fresh one with a cheap model.

Only candidates of the request's own scope reach the prompt (the router already keeps
to the scope; this stage checks again, since a leak would hand one tenant's answers to
another). Declined, failed, slow, truncated or empty synthesis routes the job on to
upstream, which then makes the one real call.

Streaming requests stream: the cheap model's deltas are held back only until the
reply's first characters show it is not the decline marker (at most
``DECISION_CHARS``), then the caller gets an async iterator of text deltas that
yields as the model produces them. ``synthesis_timeout_s`` bounds the whole call, or
for a stream the time until that decision.

Usage: ``LLM.complete`` reports it in its ``LLMReply``; a ``stream()`` iterator that has
a ``result`` attribute (an ``LLMReply``, set once it is exhausted, as the
OpenAI-compatible adapter's has) reports it there. Otherwise, and for calls abandoned
early, it is estimated from the text.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

import anyio

from cacheback._logging import get_logger

from ..core._call import Text
from ..core._costs import estimate_tokens
from ..core._job import Job
from ..core._ports import LLMReply
from ..core._settings_sections import SynthesisSettings
from ..core._stage import Stage, StageContext
from ..core._synthesis import (
    Verdict,
    build_synthesis_messages,
    is_declined,
    judge_prefix,
)
from ..core._types import Candidate, Outcome, Tier

log = get_logger("cacheback.synthesis")

#: finish_reason values that mean the answer is not whole.
_INCOMPLETE = frozenset({"length", "content_filter", "max_tokens"})

UsageHook = Callable[[LLMReply], None]


class Synthesizer(Stage):
    name = "synthesizer"
    concurrent = True

    def __init__(self, ctx: StageContext) -> None:
        """Every cheap-model call's usage is accounted (declined ones too: they cost); each
        attempt counts an outcome (``synthesis.<name>``: ok, streamed, declined, empty,
        timeout, error, truncated, stream_error); with ``synthesis_store`` on, a finished
        answer is stored as a verbatim entry."""
        assert ctx.llm is not None
        self._llm = ctx.llm
        self._state = ctx.state
        self._stats = ctx.stats
        self._on_usage: UsageHook = ctx.accounting.synthesis_usage
        self._store = ctx.store_answer
        self.events: dict[str, int] = {}

    def _settings(self) -> SynthesisSettings:
        return self._state.settings.synthesis

    async def process(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self._one(job)

    # -- helpers -----------------------------------------------------------------------

    def _event(self, job: Job, name: str) -> None:
        self.events[name] = self.events.get(name, 0) + 1
        job.trace["synthesis"] = name
        self._on_event(name)

    def _on_event(self, name: str) -> None:
        self._stats.count(f"synthesis.{name}")

    def _fall_through(self, job: Job, why: str) -> None:
        self._event(job, why)
        job.route = "upstream"

    def _estimate(self, messages: list[dict[str, str]], text: str) -> LLMReply:
        # A call abandoned early reports no usage: estimate it so the spend is not lost.
        prompt = "\n".join(m["content"] for m in messages)
        return LLMReply(
            text=text,
            model=str(getattr(self._llm, "model", "") or ""),
            input_tokens=estimate_tokens(prompt),
            output_tokens=estimate_tokens(text),
            extra={"usage_estimated": True},
        )

    def _outcome(self, job: Job, cands: list[Candidate]) -> Outcome:
        return Outcome(
            Tier.SYNTHESIS,
            similarity=cands[0].similarity if cands else None,
            candidates=tuple(cands),
            scope=job.scope,
            query_hash=job.query_hash,
            guard_reasons=job.guard_reasons,
            vector=job.vector,
        )

    def _commit(self, job: Job, text: str) -> None:
        if not self._settings().synthesis_store:
            return
        try:
            self._store(job, Text(text))
        except Exception as exc:  # storing is best effort; the caller has the answer
            log.warning("storing a synthesized answer failed", error=repr(exc))

    # -- the stage -----------------------------------------------------------------------

    async def _one(self, job: Job) -> None:
        s = self._settings()
        if job.call is None or job.abandoned:
            job.route = "upstream"  # which settles an abandoned job without any call
            return
        cands = [c for c in job.candidates if c.entry.scope == job.scope][: s.synthesis_top_k]
        if not cands:
            self._fall_through(job, "no_candidates")
            return
        messages = build_synthesis_messages(job.request.query, cands, s.synthesis_top_k)
        job.trace["synthesis_prompt"] = messages
        job.trace["synthesis_candidates"] = [c.entry.id for c in cands]
        if job.call.streaming:
            await self._streamed(job, s, cands, messages)
        else:
            await self._whole(job, s, cands, messages)

    async def _whole(
        self, job: Job, s: SynthesisSettings, cands: list[Candidate], messages: list[dict[str, str]]
    ) -> None:
        try:
            with anyio.fail_after(s.synthesis_timeout_s):
                reply = await self._llm.complete(
                    messages, max_tokens=s.synthesis_max_tokens, timeout=s.synthesis_timeout_s
                )
        except TimeoutError:
            self._on_usage(self._estimate(messages, ""))
            self._fall_through(job, "timeout")
            return
        except Exception as exc:
            log.info("synthesis failed; going upstream", error=repr(exc))
            self._on_usage(self._estimate(messages, ""))
            self._fall_through(job, "error")
            return
        self._on_usage(reply)
        if not reply.text.strip():
            self._fall_through(job, "empty")
            return
        if is_declined(reply.text):
            self._fall_through(job, "declined")
            return
        if reply.finish_reason in _INCOMPLETE:
            self._fall_through(job, "truncated")
            return
        job.synthesis_usage.update(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
        job.trace["synthesis_usage"] = job.synthesis_usage
        job.synthesis = reply.text
        job.outcome = self._outcome(job, cands)
        self._event(job, "ok")
        self._commit(job, reply.text)

    async def _streamed(
        self, job: Job, s: SynthesisSettings, cands: list[Candidate], messages: list[dict[str, str]]
    ) -> None:
        held: list[str] = []
        ended = False
        verdict = Verdict.UNDECIDED
        stream: AsyncIterator[str] | None = None
        try:
            with anyio.fail_after(s.synthesis_timeout_s):
                stream = self._llm.stream(
                    messages, max_tokens=s.synthesis_max_tokens, timeout=s.synthesis_timeout_s
                )
                while verdict is Verdict.UNDECIDED:
                    try:
                        held.append(await stream.__anext__())
                    except StopAsyncIteration:
                        ended = True
                        verdict = judge_prefix("".join(held), finished=True)
                    else:
                        verdict = judge_prefix("".join(held))
        except TimeoutError:
            await _close(stream)
            self._on_usage(self._estimate(messages, "".join(held)))
            self._fall_through(job, "timeout")
            return
        except Exception as exc:
            log.info("synthesis stream failed; going upstream", error=repr(exc))
            await _close(stream)
            self._on_usage(self._estimate(messages, "".join(held)))
            self._fall_through(job, "error")
            return
        assert stream is not None
        if verdict is Verdict.DECLINED:
            if not ended:
                await _close(stream)
            self._on_usage(_result(stream) or self._estimate(messages, "".join(held)))
            self._fall_through(job, "empty" if not "".join(held).strip() else "declined")
            return
        if ended and str(getattr(stream, "finish_reason", None) or "") in _INCOMPLETE:
            self._on_usage(_result(stream) or self._estimate(messages, "".join(held)))
            self._fall_through(job, "truncated")
            return

        # The caller reads the deltas as the model sends them; usage is filled when they end.
        job.synthesis = self._relay(job, stream, held, ended, messages, job.synthesis_usage)
        job.trace["synthesis_usage"] = job.synthesis_usage
        job.outcome = self._outcome(job, cands)
        self._event(job, "streamed")

    async def _relay(
        self,
        job: Job,
        stream: AsyncIterator[str],
        held: list[str],
        ended: bool,
        messages: list[dict[str, str]],
        usage: dict[str, int],
    ) -> AsyncGenerator[str, None]:
        """The held-back deltas, then the rest as the model sends them; accounts at the end."""
        parts = list(held)
        complete = False
        try:
            for piece in held:
                yield piece
            if not ended:
                async for piece in stream:
                    parts.append(piece)
                    yield piece
            complete = True
        except Exception:
            self._on_event("stream_error")
            raise
        finally:
            if not complete:
                await _close(stream)
            reply = _result(stream) or self._estimate(messages, "".join(parts))
            usage.update(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
            self._on_usage(reply)
            if complete and str(getattr(stream, "finish_reason", None) or "") not in _INCOMPLETE:
                self._commit(job, "".join(parts))


def _result(stream: object) -> LLMReply | None:
    result = getattr(stream, "result", None)
    return result if isinstance(result, LLMReply) else None


async def _close(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    with anyio.CancelScope(shield=True):
        try:
            await aclose()
        except Exception as exc:
            log.debug("closing the synthesis stream failed", error=repr(exc))
