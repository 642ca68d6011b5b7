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
