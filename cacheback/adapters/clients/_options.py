"""The cache arguments the drop-in clients accept on top of the SDK's own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core._errors import ConfigError
from ...core._ports import LLM, Embedder, Store
from ...core._settings import Settings
from .. import _preload
from .._defaults import load_embedder
from ._core import ClientCache, ClientOptions, NegativeHook


def build_cache(
    *,
    on_negative_hit: str | NegativeHook = "raise",
    cache_enabled: bool = True,
    ignore_params: Sequence[str] = (),
    embedder: Embedder | str | None = "auto",
    store: Store | None = None,
    llm: LLM | None = None,
    cache_settings: dict[str, Any] | None = None,
    **settings: Any,
) -> ClientCache:
    """``settings``: any ``Settings`` field by name (``similarity_threshold``,
    ``synthesis_base_url``, ...); ``cache_settings``: the same as a dict. None means unset."""
    both = sorted(set(settings) & set(cache_settings or {}))
    if both:
        raise ConfigError(f"{', '.join(both)} given both as an argument and in cache_settings")
    merged = {**(cache_settings or {}), **settings}
    unknown = sorted(set(merged) - SETTING_NAMES)
    if unknown:
        raise ConfigError(
            f"unknown cache settings: {', '.join(unknown)} (the settings are the fields of "
            "cacheback.Settings by flat name, given as client arguments or in cache_settings={...})"
        )
    options = ClientOptions(on_negative_hit, cache_enabled, tuple(ignore_params))
    resolved = Settings.from_env(**merged)
    cache = ClientCache(resolved, options, embedder=embedder, store=store, llm=llm)
    if embedder == "auto" and cache_enabled:
        # The first cached call would otherwise wait for the model to load (_preload.py).
        _preload.start(resolved, load_embedder)
    return cache


#: Every engine setting is also a client argument (``CachedOpenAI(synthesis_mode="auto")``).
#: ``embedder`` is the client's own argument (an object or a name), not the setting's name.
SETTING_NAMES = frozenset(Settings.names())
CLIENT_ARGS = frozenset(
    {"on_negative_hit", "cache_enabled", "ignore_params", "embedder", "store", "llm", "cache_settings"}
)
CACHE_ARGS = CLIENT_ARGS | SETTING_NAMES


def split_cache_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the cache arguments from a client's constructor kwargs."""
    return {k: kwargs.pop(k) for k in CACHE_ARGS if k in kwargs}
