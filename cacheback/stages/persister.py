"""persister: group-commits new answers and LRU touches to the store.

Rows go in first, with the vector when the lookup had one and without it otherwise: the
answer is durable within one group commit (a few milliseconds) of being returned, and an
exact hit at once. Rows without a vector go on to the indexer, which embeds them and
attaches their vectors; until the store has indexed an answer, vector search finds it in
the pending set.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from cacheback._logging import get_logger

from ..core._batching import BatchPolicy
from ..core._hotcache import HotCache
from ..core._pending import PendingEntries, PendingEntry
from ..core._routing import StoredTextsHook
from ..core._store_ports import Entries
from ..core._types import NewEntry
from .indexer import Indexer

log = get_logger("cacheback.persister")


@dataclass(eq=False, slots=True)
class Fill:
    entry: NewEntry
    generation: int
    done: anyio.Event | None = None
    ids: list[int] = field(default_factory=list)
    pending: PendingEntry | None = None
    attempts: int = 0  # earlier writes of this answer that failed (the retry buffer's count)


@dataclass(eq=False, slots=True)
class Barrier:
    """Set once everything queued before it has been written (``engine.flush()``)."""

    done: anyio.Event


#: LRU touches are bookkeeping, not answers: they are gathered and written at most this often
#: (and with any batch of new answers, at a barrier, and when the pipeline closes), so a run
#: of hits does not pay for one store write each.
TOUCH_INTERVAL_S = 1.0

#: The stored questions of a batch are analysed for the verbatim rule on the event loop up
#: to this many characters in all (a few questions, about a millisecond), on a worker
#: thread beyond (the analysis grows with the text).
PREPARE_INLINE_CHARS = 1200


class Persister:
    name = "persister"

    def __init__(
        self,
        entries: Entries,
        hot: HotCache,
        policy: BatchPolicy,
        on_error: Callable[[BaseException], None],
        *,
        pending: PendingEntries | None = None,
        indexer: Indexer | None = None,
        retry: Callable[[NewEntry, int], None] | None = None,
        prepare: Callable[[], StoredTextsHook | None] | None = None,
    ) -> None:
        self._entries = entries
        self._hot = hot
        self._pending = pending if pending is not None else PendingEntries()
        self._indexer = indexer
        self._policy = policy
        self._on_error = on_error
        self._retry = retry
        self._prepare = prepare
        self.written = 0
        self._touched: Counter[int] = Counter()  # entry id -> hits since the last write
        self._touches_written_at = time.monotonic()

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    def touch(self, entry_id: int) -> None:
        """Count a hit on ``entry_id`` for the LRU, written with the next batch that is due
        (see TOUCH_INTERVAL_S): no item in the queue, so a hit wakes nothing."""
        self._touched[entry_id] += 1

    async def write(self, items: Sequence[Fill | Barrier]) -> None:
        """Write a batch; an empty batch is the last one (the pipeline is closing)."""
        fills = [i for i in items if isinstance(i, Fill)]
        try:
            if fills:
                await self._put(fills)
            if self._touched and touches_due(
                fills=bool(fills),
                barrier=any(isinstance(i, Barrier) for i in items),
                closing=not items,
                since_s=time.monotonic() - self._touches_written_at,
            ):
                touches, self._touched = sorted(self._touched.elements()), Counter()
                self._touches_written_at = time.monotonic()
                await self._entries.touch(touches, time.time())
        except Exception as exc:
            self._on_error(exc)
            if self._retry is not None:
                for fill in fills:  # answers nobody waits on (populate() tells its caller)
                    if not fill.ids and fill.done is None:
                        self._retry(fill.entry, fill.attempts + 1)
            raise
        finally:
            for fill in fills:
                if fill.pending is not None and not fill.ids:
                    self._pending.done([fill.pending])  # not written: nothing to wait for
            for item in items:
                if isinstance(item, Barrier):
                    item.done.set()
            for fill in fills:
                if fill.done is not None:
                    fill.done.set()
        await self._prepare_texts([f.entry.query for f in fills if f.ids])

    async def _prepare_texts(self, texts: Sequence[str]) -> None:
        """Hand the stored questions to the verbatim rule's ``prepare`` (if it has one): the
        guard analyses them now rather than in the first lookup that judges them."""
        prepare = self._prepare() if self._prepare is not None and texts else None
        if prepare is None:
            return
        try:
            if sum(len(t) for t in texts) <= PREPARE_INLINE_CHARS:
                prepare(texts)
            else:
                await anyio.to_thread.run_sync(prepare, texts)
        except Exception as exc:  # only a head start for lookups: never a failed write
            log.warning("analysing stored questions failed", error=repr(exc))

    async def _put(self, fills: Sequence[Fill]) -> None:
        ids = await self._entries.put([f.entry for f in fills])
        self.written += len(ids)
        written: list[PendingEntry] = []
        for fill, entry_id in zip(fills, ids, strict=True):
            fill.ids.append(entry_id)
            p = fill.pending if fill.pending is not None else PendingEntry(fill.entry)
            self._pending.written(p, entry_id)
            self._hot.put(fill.entry.scope, fill.entry.query_hash, p.cache_entry(), fill.generation)
            written.append(p)
        # A row that came with its vector is searchable once put() returns (the store's
        # contract): done now, with no hop to the indexer and no second catch-up on the
        # reader, which would compete with the next request's lookups. The indexer embeds
        # the rows that came without one; the pending set serves them until then. Without
        # an embedder there is nothing to wait for.
        if self._indexer is None:
            self._pending.done(written)
            return
        self._pending.done([p for p in written if p.entry.vector is not None])
        later = [p for p in written if p.entry.vector is None]
        if later:
            self._indexer.submit(later)


def touches_due(*, fills: bool, barrier: bool, closing: bool, since_s: float) -> bool:
    """Whether gathered LRU touches are written now (see TOUCH_INTERVAL_S)."""
    return fills or barrier or closing or since_s >= TOUCH_INTERVAL_S
