"""The stage interface: small processors the runner wires together.

A stage gets a batch of jobs and, for each, either sets ``job.outcome`` (the job is
done), sets ``job.route`` to the next stage's name, or leaves both alone (the job goes
to the default successor). Tracing, metrics, error handling and queueing belong to
the runner (``_pipeline``), never to a stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import anyio

from ._accounting import CostAccounting
from ._batching import SINGLE, BatchPolicy
from ._call import Answer
from ._hotcache import HotCache
from ._job import Job
from ._pending import PendingEntries
from ._ports import LLM, Embedder, MissPredictor, Store
from ._routing import VerbatimRule
from ._settings import Settings
from ._stats import Stats
from ._types import NewEntry


class Stage(ABC):
    name: ClassVar[str]
    #: True for stages whose jobs wait on the network: each job runs as its own task.
    concurrent: ClassVar[bool] = False
    #: True for stages that are part of the cache (a failure degrades to upstream).
    cache_stage: ClassVar[bool] = True

    @property
    def policy(self) -> BatchPolicy:
        return SINGLE

    @abstractmethod
    async def process(self, jobs: Sequence[Job]) -> None: ...

    def settle_now(self, job: Job) -> bool:
        """Finish ``job`` at once if that needs no waiting (the first stage only): the
        runner calls it in the submitting task, saving the hop to this stage's task.
        False: the job goes through ``process`` as usual."""
        return False

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most stages hold nothing
        """Release resources after the pipeline has drained."""


@dataclass(slots=True)
class EngineState:
    """What of the engine changes while it runs, read by stages at each batch."""

    settings: Settings
    verbatim_rule: VerbatimRule
    negatives: int = 0  # blocklist entries: none means the gate has nothing to check


@dataclass(frozen=True, slots=True)
class StageContext:
    """Everything a stage may be built from: the engine's parts, never the engine."""

    state: EngineState
    hot: HotCache
    store: Store
    stats: Stats
    accounting: CostAccounting
    embedder: Embedder | None
    embed_limiter: anyio.CapacityLimiter
    llm: LLM | None
    #: Accounts a job's answer and queues it for writing (None: account only); any thread.
    store_answer: Callable[[Job, Answer | None], None]
    #: Jobs waiting in a stage's inbox (0 before the pipeline runs).
    queue_depth: Callable[[str], int]
    #: Answers returned but not yet indexed by the store (read-your-writes).
    pending: PendingEntries = field(default_factory=PendingEntries)
    #: False while the store is broken or unopened: requests then go around the cache.
    store_usable: Callable[[], bool] = lambda: True
    #: Keeps an answer the store could not take (entry, failed writes) for a later write.
    retry_write: Callable[[NewEntry, int], None] | None = None
    #: Sends a clear miss's upstream call before its lookup ends (``speculative_upstream``).
    miss_predictor: MissPredictor | None = None
