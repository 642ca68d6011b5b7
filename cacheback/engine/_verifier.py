"""Sampled verification of served paraphrase hits, off the request path.

With ``feedback_verify_rate`` > 0 and a cheap model (``engine.llm``, the synthesis model), a
fraction of verbatim hits is queued here after it was served; a background task asks the
model whether the cached answer answers the new question and applies its verdict as
feedback (``engine.admin.feedback``): a "no" raises the entry's own threshold as a wrong-hit
report does, a "yes" relaxes it a step. A full queue drops the check (counted), a failed
call changes nothing (counted): the request that was served never waits for any of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from cacheback._logging import get_logger

from ..core._errors import CachebackError
from ..core._feedback import parse_verdict, should_verify, verify_messages
from ..core._types import CacheEntry

if TYPE_CHECKING:
    from ._engine import AsyncEngine

log = get_logger("cacheback.engine")

#: Checks waiting at most; more are dropped (a burst of hits never queues model calls).
QUEUE = 64
#: The judge answers one word.
VERIFY_MAX_TOKENS = 5


@dataclass(frozen=True, slots=True)
class _Check:
    entry_id: int
    question: str
    answer: str
    similarity: float


class HitVerifier:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._send: MemoryObjectSendStream[_Check] | None = None
        self._rng = random.Random()

    def offer(self, entry: CacheEntry, question: str, similarity: float | None) -> None:
        """Maybe queue a check of a verbatim hit just served (never waits)."""
        engine = self._engine
        rate = engine.settings.feedback_verify_rate
        if rate <= 0 or self._send is None or engine.llm is None or similarity is None:
            return
        if not should_verify(rate, self._rng.random()):
            return
        try:
            self._send.send_nowait(_Check(entry.id, question, entry.answer, float(similarity)))
        except anyio.WouldBlock:
            engine.stats.count("verify.dropped")

    async def run(self) -> None:
        """Work through queued checks until cancelled (the engine's background task group)."""
        send, receive = anyio.create_memory_object_stream[_Check](QUEUE)
        self._send = send
        try:
            async with receive:
                async for check in receive:
                    await self._verify(check)
        finally:
            self._send = None
            send.close()

    async def _verify(self, check: _Check) -> None:
        engine = self._engine
        llm = engine.llm
        if llm is None:
            return
        s = engine.settings
        try:
            reply = await llm.complete(
                verify_messages(check.question, check.answer),
                max_tokens=VERIFY_MAX_TOKENS,
                timeout=s.synthesis_timeout_s,
            )
        except (CachebackError, OSError) as exc:
            engine.stats.count("verify.failed")
            log.warning("hit verification call failed", error=repr(exc))
            return
        verdict = parse_verdict(reply.text)
        if verdict is None:
            engine.stats.count("verify.unclear")
            return
        engine.stats.count(f"verify.{verdict.value}")
        try:
            await engine.admin.feedback(check.entry_id, verdict, similarity=check.similarity, counted=False)
        except CachebackError as exc:
            log.warning("applying a verification failed", error=repr(exc))
