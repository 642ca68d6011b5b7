"""SemanticCache and AsyncSemanticCache: the engine as a general-purpose string cache.

The async class holds the logic; the sync class runs it on a blocking portal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ._portal import PortalRunner
from .core._errors import EngineClosed
from .core._ports import LLM, Embedder, Store
from .core._settings import Settings
from .core._types import LookupRequest, NegativeEntry, Outcome, Tier
from .engine._engine import AsyncEngine

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A detailed lookup: the tier, the best similarity, the entry served and the candidates."""

    tier: str
    hit: bool
    answer: str | None
    similarity: float | None
    entry_id: int | None
    candidates: list[dict[str, Any]]
    guard_reasons: list[str]
    negative: dict[str, Any] | None
    latency_ms: float

    @classmethod
    def from_outcome(cls, o: Outcome) -> LookupResult:
        return cls(
            tier=o.tier.value,
            hit=o.hit,
            answer=o.answer,
            similarity=None if o.similarity is None else round(float(o.similarity), 4),
            entry_id=o.entry_id if o.hit else None,
            candidates=[
                {
                    "entry_id": c.entry.id,
                    "query": c.entry.query,
                    "similarity": round(float(c.similarity), 4),
                    "guard_reasons": list(c.guard_reasons),
                }
                for c in o.candidates
            ],
            guard_reasons=list(o.guard_reasons),
            negative=o.negative.as_dict() if o.negative is not None else None,
            latency_ms=round(o.latency_ms, 3),
        )


def _settings(cache_dir: str | Path | None, similarity_threshold: float | None, **kw: Any) -> Settings:
    return Settings.from_env(cache_dir=cache_dir, similarity_threshold=similarity_threshold, **kw)


class AsyncNegativeCache:
    """The blocklist: known-bad queries refused before any lookup or upstream call."""

    def __init__(self, owner: AsyncSemanticCache) -> None:
        self._owner = owner

    async def add(
        self,
        query: str,
        *,
        reason: str = "blocked",
        category: str = "general",
        severity: int = 1,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        engine = await self._owner._engine_open()
        return await engine.blocklist.add(
            query, reason=reason, category=category, severity=severity, metadata=metadata
        )

    async def check(self, query: str) -> dict[str, Any] | None:
        engine = await self._owner._engine_open()
        match = await engine.blocklist.check(query)
        return match.as_dict() if match is not None else None

    async def report_false_positive(self, entry_id: int) -> dict[str, Any]:
        engine = await self._owner._engine_open()
        return await engine.blocklist.report_false_positive(entry_id)

    async def list(self, category: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        engine = await self._owner._engine_open()
        return [_neg_dict(e) for e in await engine.blocklist.list(category, limit)]

    async def remove(self, entry_id: int) -> bool:
        engine = await self._owner._engine_open()
        return await engine.blocklist.remove(entry_id)


def _neg_dict(e: NegativeEntry) -> dict[str, Any]:
    return {
        "entry_id": e.id,
        "query": e.query,
        "reason": e.reason,
        "category": e.category,
        "severity": e.severity,
        "false_positives": e.false_positives,
        "created_at": e.created_at,
        "metadata": e.metadata,
    }


class AsyncSemanticCache:
    """``async with AsyncSemanticCache(cache_dir=..., similarity_threshold=0.92) as cache``."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        similarity_threshold: float | None = None,
        *,
        namespace: str | None = None,
        cache_ttl: float | None = None,
        max_entries: int | None = None,
        store_url: str | None = None,
        embedder: Embedder | str | None = "auto",
        store: Store | None = None,
        llm: LLM | None = None,
        engine: AsyncEngine | None = None,
        **settings: Any,
    ) -> None:
        if engine is None:
            s = _settings(
                cache_dir,
                similarity_threshold,
                namespace=namespace,
                cache_ttl=cache_ttl,
                max_entries=max_entries,
                store_url=store_url,
                **settings,
            )
            engine = AsyncEngine(s, store=store, embedder=embedder, llm=llm)
        self.engine = engine
        self.negative = AsyncNegativeCache(self)
        self._lock = anyio.Lock()
        self._closed = False

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    async def _engine_open(self) -> AsyncEngine:
        if self._closed:
            raise EngineClosed("this cache is closed")
        if not self.engine.running:
            async with self._lock:
                if not self.engine.running:
                    await self.engine.open()
        return self.engine

    async def open(self) -> AsyncSemanticCache:
        await self._engine_open()
        return self

    async def __aenter__(self) -> AsyncSemanticCache:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        await self.engine.aclose()

    def _request(self, query: str, namespace: str | None, scope: str, **kw: Any) -> LookupRequest:
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        return LookupRequest(query=query, scope=scope, namespace=namespace, **kw)

    async def populate(
        self,
        query: str,
        response: str,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        scope: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Cache ``response`` as the answer to ``query``; returns the entry id."""
        if not isinstance(response, str):
            raise TypeError("response must be a string")
        engine = await self._engine_open()
        return await engine.populate(
            self._request(query, namespace, scope, ttl=ttl), response, metadata=metadata
        )

    async def lookup(self, query: str, *, namespace: str | None = None, scope: str = "") -> str | None:
        """The cached answer to ``query`` or a paraphrase of it, or None."""
        engine = await self._engine_open()
        outcome = await engine.lookup(self._request(query, namespace, scope))
        return outcome.answer if outcome.hit else None  # no detailed result to build

    async def lookup_detailed(
        self, query: str, *, namespace: str | None = None, scope: str = ""
    ) -> LookupResult:
        engine = await self._engine_open()
        outcome = await engine.lookup(self._request(query, namespace, scope))
        return LookupResult.from_outcome(outcome)

    async def stats(self) -> dict[str, Any]:
        engine = await self._engine_open()
        return await engine.admin.stats()

    async def flush(self) -> None:
        """Wait until answers written behind so far are stored (visible to paraphrases)."""
        engine = await self._engine_open()
        await engine.flush()

    async def evict_expired(self) -> int:
        engine = await self._engine_open()
        return await engine.admin.evict_expired()

    async def clear(self, namespace: str | None = None) -> int:
        engine = await self._engine_open()
        return await engine.admin.clear(namespace)

    async def delete(self, entry_id: int) -> bool:
        engine = await self._engine_open()
        return await engine.admin.delete([entry_id]) > 0

    async def report_wrong_hit(self, entry_id: int, similarity: float | None = None) -> bool:
        """The entry served a wrong answer (``similarity``: the hit's, if known): it is not
        served again for that question or a near paraphrase (docs/hit-safety.md#feedback)."""
        engine = await self._engine_open()
        return await engine.admin.report_wrong_hit(entry_id, similarity=similarity)

    async def report_correct_hit(self, entry_id: int) -> bool:
        """The entry served a right answer: a threshold raised by reports relaxes a step."""
        engine = await self._engine_open()
        return await engine.admin.report_correct_hit(entry_id)


class NegativeCache:
    """Blocking twin of :class:`AsyncNegativeCache`."""

    def __init__(self, owner: SemanticCache) -> None:
        self._owner = owner
        self._neg = owner._async.negative

    def add(
        self,
        query: str,
        *,
        reason: str = "blocked",
        category: str = "general",
        severity: int = 1,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        return self._owner._call(
            lambda: self._neg.add(
                query, reason=reason, category=category, severity=severity, metadata=metadata
            )
        )

    def check(self, query: str) -> dict[str, Any] | None:
        return self._owner._call(lambda: self._neg.check(query))

    def report_false_positive(self, entry_id: int) -> dict[str, Any]:
        return self._owner._call(lambda: self._neg.report_false_positive(entry_id))

    def list(self, category: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._owner._call(lambda: self._neg.list(category, limit))

    def remove(self, entry_id: int) -> bool:
        return self._owner._call(lambda: self._neg.remove(entry_id))


class SemanticCache:
    """Blocking facade over :class:`AsyncSemanticCache`; safe to use from many threads."""

    def __init__(
        self, cache_dir: str | Path | None = None, similarity_threshold: float | None = None, **kwargs: Any
    ) -> None:
        self._runner = PortalRunner()
        self._owns_runner = True
        try:
            self._async = AsyncSemanticCache(cache_dir, similarity_threshold, **kwargs)
            self._runner.call(self._async.open)
        except BaseException:
            self._runner.close()
            raise
        self._runner.on_close(self._async.close)  # also at interpreter exit
        self.negative = NegativeCache(self)

    @classmethod
    def _over(cls, runner: PortalRunner, async_cache: AsyncSemanticCache) -> SemanticCache:
        """A view sharing another owner's portal and engine (the SDK clients' ``.cache``)."""
        self = cls.__new__(cls)
        self._runner = runner
        self._owns_runner = False
        self._async = async_cache
        self.negative = NegativeCache(self)
        return self

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await fn()

        return self._runner.call(run)

    @property
    def engine(self) -> AsyncEngine:
        return self._async.engine

    @property
    def settings(self) -> Settings:
        return self._async.settings

    def populate(self, query: str, response: str, **kw: Any) -> int:
        return int(self._call(lambda: self._async.populate(query, response, **kw)))

    def lookup(self, query: str, **kw: Any) -> str | None:
        result: str | None = self._call(lambda: self._async.lookup(query, **kw))
        return result

    def lookup_detailed(self, query: str, **kw: Any) -> LookupResult:
        result: LookupResult = self._call(lambda: self._async.lookup_detailed(query, **kw))
        return result

    @property
    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self._async.stats)
        return result

    def flush(self) -> None:
        self._call(self._async.flush)

    def evict_expired(self) -> int:
        return int(self._call(self._async.evict_expired))

    def clear(self, namespace: str | None = None) -> int:
        return int(self._call(lambda: self._async.clear(namespace)))

    def delete(self, entry_id: int) -> bool:
        return bool(self._call(lambda: self._async.delete(entry_id)))

    def report_wrong_hit(self, entry_id: int, similarity: float | None = None) -> bool:
        return bool(self._call(lambda: self._async.report_wrong_hit(entry_id, similarity)))

    def report_correct_hit(self, entry_id: int) -> bool:
        return bool(self._call(lambda: self._async.report_correct_hit(entry_id)))

    def close(self) -> None:
        if not self._owns_runner:
            return  # the owning client closes the engine and the portal
        self._runner.close()  # runs the close hook: flushes and closes the engine

    def __enter__(self) -> SemanticCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "AsyncNegativeCache",
    "AsyncSemanticCache",
    "LookupResult",
    "NegativeCache",
    "SemanticCache",
    "Tier",
]
