"""How the engine's stages are built and connected (the pipeline graph)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core._batching import BatchPolicy
from ..core._ports import Store
from ..core._stage import Stage
from ..stages.embed_batcher import EmbedBatcher
from ..stages.negative_gate import NegativeGate
from ..stages.normalize import Normalize
from ..stages.persister import Persister
from ..stages.synthesizer import Synthesizer
from ..stages.tier_router import TierRouter
from ..stages.upstream import Upstream
from ..stages.vector_search import VectorSearch

if TYPE_CHECKING:
    from ._engine import AsyncEngine

#: Where each stage may send a job (the first is its default successor).
EDGES: dict[str, tuple[str, ...]] = {
    "normalize": ("embed_batcher", "vector_search", "upstream"),
    "embed_batcher": ("negative_gate", "vector_search", "upstream"),
    "negative_gate": ("vector_search", "upstream"),
    "vector_search": ("tier_router", "upstream"),
    "tier_router": ("upstream", "synthesizer"),
    "synthesizer": ("upstream",),
    "upstream": (),
}


def build_persister(engine: AsyncEngine, store: Store) -> Persister:
    s = engine.settings
    return Persister(
        store,
        engine.hot,
        BatchPolicy(s.persist_batch, s.persist_interval_s),
        on_error=lambda exc: engine.stats.count("cache_errors"),
        embedder=engine.embedder,
        limiter=engine.embed_limiter,
    )


def build_stages(engine: AsyncEngine, store: Store) -> list[Stage]:
    """The stages in order; without an embedder there is no embedding or negative gate, and
    without a cheap model no synthesizer."""
    s = engine.settings
    stages: list[Stage] = [
        Normalize(
            engine.hot,
            store,
            has_embedder=engine.embedder is not None,
            negatives=lambda: engine.negative_entries,
        )
    ]
    if engine.embedder is not None:
        policy = BatchPolicy(s.embed_max_batch, s.embed_max_wait_ms / 1000.0)
        stages.append(
            EmbedBatcher(
                engine.embedder,
                policy,
                engine.embed_limiter,
                backlog=lambda: engine.queue_depth("embed_batcher"),
                negatives=lambda: engine.negative_entries,
            )
        )
        stages.append(
            NegativeGate(store, lambda: engine.settings.negative_threshold, lambda: engine.negative_entries)
        )
    stages.append(VectorSearch(store, s.top_k))
    stages.append(
        TierRouter(
            lambda: engine.settings, lambda: engine.verbatim_rule, can_synthesize=engine.llm is not None
        )
    )
    if engine.llm is not None:
        stages.append(
            Synthesizer(
                engine.llm,
                lambda: engine.settings,
                on_usage=engine.accounting.synthesis_usage,
                on_event=lambda name: engine.stats.count(f"synthesis.{name}"),
                make_commit=engine.make_commit,
            )
        )
    stages.append(Upstream(engine.make_commit, engine.hot))
    return stages


def edges_for(stages: Sequence[Stage]) -> dict[str, tuple[str, ...]]:
    names = {st.name for st in stages}
    return {n: tuple(e for e in EDGES[n] if e in names) for n in names}
