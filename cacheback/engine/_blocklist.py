"""``engine.blocklist``: the negative cache as the engine manages it.

The store keeps the entries (``Blocklist`` port); this object adds what the engine owes them:
queries are embedded here, the hot cache forgets every remembered answer when an entry is
added (memory must not replay what is now blocked), and a false positive reported often
enough removes its entry.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core._errors import EngineClosed
from ..core._stage import EngineState
from ..core._store_ports import Blocklist
from ..core._types import NegativeEntry, NegativeMatch, clean_text

if TYPE_CHECKING:
    from ._engine import AsyncEngine


class EngineBlocklist:
    def __init__(self, engine: AsyncEngine, state: EngineState) -> None:
        self._engine = engine
        self._state = state

    @property
    def size(self) -> int:
        """Entries known to exist (stages skip the gate while it is 0)."""
        return self._state.negatives

    @size.setter
    def size(self, value: int) -> None:
        self._state.negatives = value

    def _store(self) -> Blocklist:
        store = self._engine.store
        if store is None or not self._engine.running:
            raise EngineClosed("the cache engine is not open (use 'async with' or open())")
        return store.blocklist

    async def refresh(self) -> bool:
        """Re-read the number of entries (another process may have changed it); True if it
        changed, and then the hot cache was invalidated."""
        size = await self._store().count()
        if size == self.size:
            return False
        self.size = size
        self._engine.hot.bump()
        return True

    async def add(
        self,
        query: str,
        *,
        reason: str = "blocked",
        category: str = "general",
        severity: int = 1,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        store = self._store()
        vecs = await self._engine.embed([query])
        vector = vecs[0] if vecs is not None else np.zeros(0, dtype=np.float32)
        entry_id = await store.add(
            clean_text(query), vector, reason, category, int(severity), metadata or {}, time.time()
        )
        self.size = await store.count()
        self._engine.hot.bump()
        return entry_id

    async def check(self, query: str) -> NegativeMatch | None:
        store = self._store()
        vecs = await self._engine.embed([query])
        if vecs is None:
            return None
        found = await store.search(vecs[0], 1)
        if found and found[0][1] >= self._engine.settings.matching.negative_threshold:
            neg, sim = found[0]
            return NegativeMatch(neg.id, neg.query, neg.reason, neg.category, neg.severity, sim)
        return None

    async def report_false_positive(self, entry_id: int) -> dict[str, Any]:
        store = self._store()
        count = await store.report_false_positive(entry_id)
        if count < 0:
            return {"entry_id": entry_id, "found": False, "false_positives": 0, "removed": False}
        removed = False
        if count >= self._engine.settings.matching.negative_false_positive_limit:
            removed = await store.remove(entry_id)
            self.size = await store.count()
        return {"entry_id": entry_id, "found": True, "false_positives": count, "removed": removed}

    async def list(self, category: str | None = None, limit: int | None = None) -> list[NegativeEntry]:
        return await self._store().list(category, limit)

    async def remove(self, entry_id: int) -> bool:
        store = self._store()
        ok = await store.remove(entry_id)
        self.size = await store.count()
        return ok
