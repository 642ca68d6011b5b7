"""The embedded defaults the engine falls back to when given no store or embedder."""

from __future__ import annotations

from ..core._embedder_status import NoEmbedder
from ..core._ports import LLM, Embedder, Store
from ..core._settings import Settings


def default_embedder(settings: Settings) -> Embedder | NoEmbedder:
    """MiniLM on onnxruntime (in NumPy when onnxruntime cannot run), loaded, or
    ``NoEmbedder(reason)`` (exact-match only) with a warning if neither can run here."""
    from . import _preload

    ready, embedder = _preload.take(settings)  # loaded ahead as the client was constructed
    if ready and embedder is not None:
        return embedder
    return load_embedder(settings)


def load_embedder(settings: Settings) -> Embedder | NoEmbedder:
    from .embedders import choose_default_embedder
    from .embedders._minilm import model_cache_dir

    e = settings.embedding
    return choose_default_embedder(
        model_dir=e.model_dir,
        intra_op_threads=e.intra_op_threads,
        compute=e.embed_compute,
        device=e.embed_device,
        keep_warm_ms=e.embed_keep_warm_ms,
        keep_warm_for_s=e.embed_keep_warm_for_s,
        model_cache=model_cache_dir("auto", cache_dir=settings.storage.cache_dir),
        load=True,  # ready means ready: the first lookup does not pay for loading the model
    )


def default_store(settings: Settings, dim: int) -> Store:
    s = settings.storage
    if s.store_url:
        from .storage.postgres import PostgresStore

        return PostgresStore(s.store_url, dim, max_entries=s.max_entries, timeout=s.store_timeout_s)
    from .storage import EmbeddedStore

    # The directory is made when the store opens: a failure there degrades, never raises here.
    return EmbeddedStore(s.cache_dir, dim, max_entries=s.max_entries, index=s.index)


def default_llm(settings: Settings) -> LLM | None:
    from .llm import llm_from_settings

    return llm_from_settings(settings.synthesis)
