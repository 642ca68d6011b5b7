"""indexer: gives stored rows their vectors and gets them into the index, after the rows
are durable.

The persister commits an answer's row first, so a crash right after the answer was returned
loses at most the last group commit; rows whose lookup did not embed the question (an empty
scope) come here to be embedded and attached. On open, and now and then after, rows that
still have no vector (left by a crash, or by another process) are caught up the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.to_thread
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cacheback._logging import get_logger

from ..core._errors import CachebackError
from ..core._pending import PendingEntries, PendingEntry
from ..core._ports import Embedder
from ..core._store_ports import ChangeFeed, Entries
from ..core._types import match_text

log = get_logger("cacheback.indexer")

_BATCH = 32  # texts per inference call
_CATCH_UP_PAGE = 256  # rows read per catch-up query
_DRAIN_S = 5.0  # at close, embed what is queued for at most this long (the rest: next open)


class Indexer:
    name = "indexer"

    def __init__(
        self,
        entries: Entries,
        changes: ChangeFeed,
        pending: PendingEntries,
        embedder: Embedder,
        limiter: anyio.CapacityLimiter,
        queue_size: int = 4096,
    ) -> None:
        self._entries = entries
        self._changes = changes
        self._pending = pending
        self._embedder = embedder
        self._limiter = limiter
        send, recv = anyio.create_memory_object_stream[PendingEntry](queue_size)
        self._send: MemoryObjectSendStream[PendingEntry] = send
        self._recv: MemoryObjectReceiveStream[PendingEntry] = recv
        self._finished = anyio.Event()
        self.indexed = 0
        self.caught_up = 0
        self.failures = 0

    def submit(self, items: Sequence[PendingEntry]) -> None:
        """Queue written rows for their vectors; a full queue leaves them to the catch-up."""
        for i, p in enumerate(items):
            try:
                self._send.send_nowait(p)
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._pending.done(items[i:])  # still exact hits; semantic after catch-up
                return

    def close(self) -> None:
        """No more input: ``run`` finishes what is queued (within ``_DRAIN_S``) and returns."""
        self._send.close()

    async def run(self) -> None:
        try:
            with self._recv:
                async for first in self._recv:
                    batch = [first]
                    while len(batch) < _BATCH:
                        try:
                            batch.append(self._recv.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self._index(batch)
        finally:
            self._finished.set()

    async def drain(self) -> None:
        """Close and wait (bounded) until queued rows have their vectors."""
        self.close()
        with anyio.move_on_after(_DRAIN_S):
            await self._finished.wait()

    async def _index(self, batch: list[PendingEntry]) -> None:
        written = [p for p in batch if p.entry_id > 0]
        live = [p for p in written if p.vector is None]
        try:
            if len(live) < len(written):  # rows that came with a vector: index them now
                await self._changes.sync()
            if live:
                texts = [match_text(p.entry.query) for p in live]
                vectors = await anyio.to_thread.run_sync(self._embedder.embed, texts, limiter=self._limiter)
                for p, v in zip(live, vectors, strict=True):
                    self._pending.embedded(p, v)  # searchable from the pending set at once
                await self._entries.attach_vectors([p.entry_id for p in live], vectors)
                self.indexed += len(live)
        except (CachebackError, OSError, RuntimeError, ValueError) as exc:
            # The rows stay exact hits; the periodic catch-up tries their vectors again.
            self.failures += 1
            log.warning("indexing failed", rows=len(live), error=repr(exc))
        finally:
            self._pending.done(batch)

    async def catch_up(self) -> int:
        """Embed and index every live row that has no vector (except this process's own,
        queued already). Returns how many got one."""
        busy = self._pending.ids()
        done = 0
        skipped: set[int] = set()
        while True:
            page = _CATCH_UP_PAGE + len(skipped) + len(busy)
            rows = await self._entries.unindexed(page)
            todo = [r for r in rows if r.id not in busy and r.id not in skipped]
            if not todo:
                break
            for start in range(0, len(todo), _BATCH):
                chunk = todo[start : start + _BATCH]
                texts = [match_text(r.query) for r in chunk]
                vectors = await anyio.to_thread.run_sync(self._embedder.embed, texts, limiter=self._limiter)
                good = [i for i, v in enumerate(vectors) if bool(np.all(np.isfinite(v)))]
                skipped.update(r.id for i, r in enumerate(chunk) if i not in good)
                if good:
                    await self._entries.attach_vectors([chunk[i].id for i in good], vectors[good])
                    done += len(good)
            if len(rows) < page:
                break
        if done:
            self.caught_up += done
            log.info("indexer caught up", rows=done)
        return done
