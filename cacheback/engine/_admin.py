"""``engine.admin``: stats and operator actions over the cached entries.

Every action that removes entries also invalidates the hot cache (a deleted answer must
never be replayed from memory). ``stats`` never raises for a store that fails: it reports
the cache as degraded, with the reason, and what it could still count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cacheback._logging import get_logger

from ..core._errors import CachebackError, EngineClosed
from ..core._feedback import FeedbackPolicy, FeedbackResult, Verdict, after_feedback
from ..core._ports import LLM
from ..core._store_ports import Store
from ..core._types import CacheEntry

if TYPE_CHECKING:
    from ._engine import AsyncEngine

log = get_logger("cacheback.engine")


class EngineAdmin:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _store(self) -> Store:
        store = self._engine.store
        if store is None or not self._engine.running:
            raise EngineClosed("the cache engine is not open (use 'async with' or open())")
        return store

    async def evict_expired(self) -> int:
        n = await self._store().maintenance.evict_expired(time.time())
        if n:
            self._engine.hot.bump()
            self._engine.stats.count("expired", n)
        return n

    async def clear(self, namespace: str | None = None) -> int:
        store = self._store()
        if namespace is None:
            n = await store.maintenance.clear(None)
        else:
            entries = await store.maintenance.list(limit=10**9)
            ids = [e.id for e in entries if e.metadata.get("namespace") == namespace]
            n = await store.entries.delete(ids)
        self._engine.forget_all()
        return n

    async def delete(self, ids: Sequence[int]) -> int:
        n = await self._store().entries.delete(list(ids))
        self._engine.forget_all()
        return n

    async def report_wrong_hit(self, entry_id: int, *, similarity: float | None = None) -> bool:
        """An entry served a wrong answer: it is not served again for that question or a
        near paraphrase of it (see :meth:`feedback`). True if the entry exists."""
        return (await self.feedback(entry_id, Verdict.WRONG, similarity=similarity)).found

    async def report_correct_hit(self, entry_id: int) -> bool:
        """An entry served a right answer: its own threshold, if a report raised it, comes
        back down a step toward the global one. True if the entry exists."""
        return (await self.feedback(entry_id, Verdict.CORRECT)).found

    async def feedback(
        self, entry_id: int, verdict: Verdict, *, similarity: float | None = None, counted: bool = True
    ) -> FeedbackResult:
        """Apply one verdict on a hit ``entry_id`` served (``core/_feedback.py``).

        A wrong paraphrase hit raises the entry's own threshold above the similarity it was
        served at (``similarity``, or that of the latest hit this process served from it); a
        wrong hit that was an exact one, or one this process has no record of and no
        similarity for, removes the entry (its answer is wrong for its own question, or
        the similarity is unknown). A wrong verdict also makes memory forget its hits.
        ``counted``: a report (counted in stats), not a sampled verification (counted apart).
        """
        engine = self._engine
        store = self._store()
        entry = await store.entries.get(entry_id)
        if entry is None:
            return FeedbackResult(entry_id, found=False)
        if verdict is Verdict.WRONG:
            if counted:
                engine.stats.count("wrong_hits_reported")
            served = engine.served.get(entry_id)
            engine.served.forget(entry_id)
            if similarity is None and served is not None and served.tier == "verbatim":
                similarity = served.similarity
            if similarity is None:
                removed = await self.delete([entry_id]) > 0
                return FeedbackResult(entry_id, found=removed, removed=removed)
        elif counted:
            engine.stats.count("correct_hits_reported")
        s = engine.settings
        policy = FeedbackPolicy(s.feedback_margin, s.feedback_relax_step)
        threshold = after_feedback(
            entry.hit_threshold, verdict, global_threshold=s.similarity_threshold,
            similarity=similarity, policy=policy,
        )  # fmt: skip
        found = True
        if threshold != entry.hit_threshold:
            found = await store.maintenance.set_hit_threshold(entry_id, threshold)
        if verdict is Verdict.WRONG:
            engine.forget_all()  # no remembered paraphrase hit on it may be replayed
        return FeedbackResult(entry_id, found=found, hit_threshold=threshold if found else None)

    async def entries(self, limit: int = 100, offset: int = 0) -> list[CacheEntry]:
        """Stored entries, newest first (expired ones included)."""
        return await self._store().maintenance.list(limit, offset)

    async def get(self, entry_id: int) -> CacheEntry | None:
        return await self._store().entries.get(entry_id)

    async def count(self) -> int:
        return await self._store().maintenance.count()

    async def stats(self) -> dict[str, Any]:
        """Counters, sizes, queues and health. A failing store never makes this raise."""
        engine = self._engine
        await engine.settled()  # the usage of answers just returned is counted
        store = self._store()
        out = engine.stats.summary()
        out["entries"] = None  # unknown while the store is broken (see "cache")
        out["negative_entries"] = engine.blocklist.size
        if engine.store_usable():
            try:
                out["entries"] = await store.maintenance.count()
                out["negative_entries"] = await store.blocklist.count()
            except CachebackError as exc:
                log.warning("stats could not read the store", error=repr(exc))
        out["feedback"] = {  # reports on hits and sampled verifications (core/_feedback.py)
            k.replace(".", "_"): int(engine.stats.total(k))
            for k in ("wrong_hits_reported", "correct_hits_reported", "verify.wrong", "verify.correct",
                      "verify.unclear", "verify.failed", "verify.dropped")
        }  # fmt: skip
        out["latency_ms"] = engine.stats.latency()
        out["embedder"] = engine.embedder.describe() if engine.embedder is not None else None
        # why none runs (exact matches only) or why it is a fallback; None when all is well
        out["embedder_reason"] = engine.embedder_reason()
        out["store"] = store.describe()
        out["cache"] = engine.health()
        out.update(engine.runtime_stats())
        out["synthesis"] = {
            "llm": _describe(engine.llm),
            "attempts": {
                k.split(".", 1)[1]: int(engine.stats.total(k))
                for k in sorted({*engine.stats.base, *engine.stats.session})
                if k.startswith("synthesis.")
            },
        }
        s = engine.settings
        out["settings"] = {
            "similarity_threshold": s.matching.similarity_threshold,
            "synthesis_threshold": s.synthesis.synthesis_threshold,
            "synthesis_mode": s.synthesis.synthesis_mode,
            "cache_ttl": s.storage.cache_ttl,
            "max_entries": s.storage.max_entries,
            "guard_enabled": s.matching.guard_enabled,
        }
        for section, describe in engine.describers.items():  # sections the surfaces add
            out[section] = describe()
        return out


def _describe(llm: LLM | None) -> dict[str, Any] | None:
    if llm is None:
        return None
    describe = getattr(llm, "describe", None)
    return describe() if callable(describe) else {"kind": type(llm).__name__}
