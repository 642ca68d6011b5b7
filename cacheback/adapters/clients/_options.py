"""The cache arguments the drop-in clients accept on top of the SDK's own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core._ports import LLM, Embedder, Store
from ...core._settings import Settings
from ._core import ClientCache, ClientOptions, NegativeHook


def build_cache(
    *,
    similarity_threshold: float | None = None,
    cache_ttl: float | None = None,
    cache_dir: str | Path | None = None,
    synthesis_mode: str | None = None,
    namespace: str | None = None,
    on_negative_hit: str | NegativeHook = "raise",
    cache_enabled: bool = True,
    ignore_params: Sequence[str] = (),
    max_entries: int | None = None,
    embedder: Embedder | str | None = "auto",
    store: Store | None = None,
    llm: LLM | None = None,
    cache_settings: dict[str, Any] | None = None,
) -> ClientCache:
    settings = Settings.from_env(
        similarity_threshold=similarity_threshold,
        cache_ttl=cache_ttl,
        cache_dir=cache_dir,
        synthesis_mode=synthesis_mode,
        namespace=namespace,
        max_entries=max_entries,
        **(cache_settings or {}),
    )
    options = ClientOptions(on_negative_hit, cache_enabled, tuple(ignore_params))
    return ClientCache(settings, options, embedder=embedder, store=store, llm=llm)


CACHE_ARGS = (
    "similarity_threshold",
    "cache_ttl",
    "cache_dir",
    "synthesis_mode",
    "namespace",
    "on_negative_hit",
    "cache_enabled",
    "ignore_params",
    "max_entries",
    "embedder",
    "store",
    "llm",
    "cache_settings",
)


def split_cache_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the cache arguments from a client's constructor kwargs."""
    return {k: kwargs.pop(k) for k in CACHE_ARGS if k in kwargs}
