"""The pipeline graph, declared once: each stage's constructor, when it is present, and
where it may send a job (the first edge is its default successor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core._batching import BatchPolicy
from ..core._routing import stored_texts_hook
from ..core._stage import Stage, StageContext
from ..stages.embed_batcher import EmbedBatcher
from ..stages.indexer import Indexer
from ..stages.negative_gate import NegativeGate
from ..stages.normalize import Normalize
from ..stages.persister import Persister
from ..stages.synthesizer import Synthesizer
from ..stages.tier_router import TierRouter
from ..stages.upstream import Upstream
from ..stages.vector_search import VectorSearch


def _always(ctx: StageContext) -> bool:
    return True


def _embeds(ctx: StageContext) -> bool:
    return ctx.embedder is not None


def _synthesizes(ctx: StageContext) -> bool:
    return ctx.llm is not None


@dataclass(frozen=True, slots=True)
class StageSpec:
    build: Callable[[StageContext], Stage]
    edges: tuple[str, ...]
    present: Callable[[StageContext], bool] = _always


def _negatives(ctx: StageContext) -> Callable[[], int]:
    """How many blocklist entries exist, as cheaply as it can be known: the store's
    in-memory copy when it is current (it follows other replicas within milliseconds), else
    the count the engine re-reads about once a second."""
    state, blocklist = ctx.state, ctx.store.blocklist

    def negatives() -> int:
        known = blocklist.known_count()
        return state.negatives if known is None else known

    return negatives


def _normalize(ctx: StageContext) -> Stage:
    state = ctx.state
    has_embedder = ctx.embedder is not None
    return Normalize(
        ctx.hot,
        ctx.store,
        has_embedder=has_embedder,
        negatives=_negatives(ctx),
        pending=ctx.pending,
        negative_threshold=lambda: state.settings.matching.negative_threshold,
        usable=ctx.store_usable,
    )


def _negative_gate(ctx: StageContext) -> Stage:
    state = ctx.state
    return NegativeGate(
        ctx.store.blocklist, lambda: state.settings.matching.negative_threshold, _negatives(ctx)
    )


def _vector_search(ctx: StageContext) -> Stage:
    return VectorSearch(ctx.store.entries, ctx.state.settings.matching.top_k, ctx.pending)


def _tier_router(ctx: StageContext) -> Stage:
    state = ctx.state
    return TierRouter(
        lambda: state.settings.matching,
        lambda: state.settings.synthesis,
        lambda: state.verbatim_rule,
        can_synthesize=ctx.llm is not None,
    )


#: The graph. Without an embedder there is no embedding or negative gate, and without a
#: cheap model no synthesizer: edges to an absent stage are dropped.
STAGES: dict[str, StageSpec] = {
    "normalize": StageSpec(_normalize, ("embed_batcher", "vector_search", "upstream")),
    "embed_batcher": StageSpec(EmbedBatcher, ("negative_gate", "vector_search", "upstream"), _embeds),
    "negative_gate": StageSpec(_negative_gate, ("vector_search", "upstream"), _embeds),
    "vector_search": StageSpec(_vector_search, ("tier_router", "upstream")),
    "tier_router": StageSpec(_tier_router, ("upstream", "synthesizer")),
    "synthesizer": StageSpec(Synthesizer, ("upstream",), _synthesizes),
    "upstream": StageSpec(Upstream, ()),
}


def build_graph(ctx: StageContext) -> tuple[list[Stage], dict[str, tuple[str, ...]]]:
    """The present stages in order, and their edges among themselves."""
    names = [name for name, spec in STAGES.items() if spec.present(ctx)]
    stages = [STAGES[name].build(ctx) for name in names]
    edges = {n: tuple(e for e in STAGES[n].edges if e in names) for n in names}
    return stages, edges


def build_indexer(ctx: StageContext) -> Indexer | None:
    """Embeds stored rows that came without a vector (none without an embedder)."""
    if ctx.embedder is None:
        return None
    return Indexer(ctx.store.entries, ctx.store.changes, ctx.pending, ctx.embedder, ctx.embed_limiter)


def build_persister(ctx: StageContext, indexer: Indexer | None) -> Persister:
    s, stats = ctx.state.settings.pipeline, ctx.stats
    return Persister(
        ctx.store.entries,
        ctx.hot,
        BatchPolicy(s.persist_batch, s.persist_interval_s),
        on_error=lambda exc: stats.count("cache_errors"),
        pending=ctx.pending,
        indexer=indexer,
        retry=ctx.retry_write,
        prepare=lambda: stored_texts_hook(ctx.state.verbatim_rule),
    )
