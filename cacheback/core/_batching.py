"""Batching policy: pure functions deciding how long a stage waits to fill a batch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """``max_batch`` items per call; wait at most ``max_wait_s`` for more, and only under load."""

    max_batch: int = 1
    max_wait_s: float = 0.0


SINGLE = BatchPolicy()


def batch_wait(policy: BatchPolicy, collected: int, backlog_seen: bool, waited_s: float) -> float:
    """Seconds to keep waiting for more items before running the batch.

    ``backlog_seen`` is True when more than the first item was already queued: only then
    is waiting worth it (a lone request under no load must never wait).
    """
    if collected >= policy.max_batch or not backlog_seen:
        return 0.0
    return max(0.0, policy.max_wait_s - waited_s)


#: At most this many lookups at once get their upstream request built during embedding.
EARLY_PREPARE_LIMIT = 2


def prepare_early(jobs_to_embed: int, embed_backlog: int, limit: int = EARLY_PREPARE_LIMIT) -> bool:
    """Whether the clients should build their upstream requests while these jobs embed.

    The building runs on the event loop while inference runs on a worker thread, so a miss
    sends sooner; for a hit the work is thrown away. Only worth it while the CPU has room:
    no embedding backlog and only a few lookups in this batch.
    """
    return embed_backlog == 0 and 0 < jobs_to_embed <= limit
