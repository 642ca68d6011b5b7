"""The stage interface: small processors the runner wires together.

A stage gets a batch of jobs and, for each, either sets ``job.outcome`` (the job is
done), sets ``job.route`` to the next stage's name, or leaves both alone (the job goes
to the default successor). Tracing, metrics, error handling and queueing belong to
the runner (``_pipeline``), never to a stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ._batching import SINGLE, BatchPolicy
from ._job import Job


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

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most stages hold nothing
        """Release resources after the pipeline has drained."""
