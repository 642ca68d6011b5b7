"""cacheback: a universal semantic cache for the OpenAI and Anthropic APIs.

The SDK clients are imported lazily so that the engine works without the provider
SDKs installed (extras ``openai`` and ``anthropic``). Importing the package configures no
logging (see ``cacheback/_logging.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._semantic_cache import (
    AsyncNegativeCache,
    AsyncSemanticCache,
    LookupResult,
    NegativeCache,
    SemanticCache,
)
from .adapters._defaults import default_embedder, default_llm, default_store
from .core._errors import (
    CachebackBlocked,
    CachebackError,
    ConfigError,
    EmbedderError,
    EngineClosed,
    ModelNotFound,
    StoreCorrupt,
    StoreError,
)
from .core._gc import freeze_gc
from .core._settings import Settings
from .core._settings_sections import (
    EmbeddingSettings,
    MatchingSettings,
    MediaSettings,
    ObservabilitySettings,
    PipelineSettings,
    StorageSettings,
    SynthesisSettings,
)
from .core._types import Tier
from .engine._defaults import Defaults, install_defaults
from .engine._engine import AsyncEngine

if TYPE_CHECKING:
    from .adapters.clients import (
        AsyncCachedAnthropic,
        AsyncCachedOpenAI,
        CachedAnthropic,
        CachedOpenAI,
    )

__version__ = "0.1.1"

# The engine builds nothing concrete itself: the embedded store and embedder come from here.
install_defaults(Defaults(embedder=default_embedder, store=default_store, llm=default_llm))

_CLIENTS = {"CachedOpenAI", "AsyncCachedOpenAI", "CachedAnthropic", "AsyncCachedAnthropic"}


def __getattr__(name: str) -> Any:
    if name in _CLIENTS:
        from .adapters import clients

        return getattr(clients, name)
    raise AttributeError(f"module 'cacheback' has no attribute {name!r}")


__all__ = [
    "AsyncCachedAnthropic",
    "AsyncCachedOpenAI",
    "AsyncEngine",
    "AsyncNegativeCache",
    "AsyncSemanticCache",
    "CachebackBlocked",
    "CachebackError",
    "CachedAnthropic",
    "CachedOpenAI",
    "ConfigError",
    "EmbedderError",
    "EmbeddingSettings",
    "EngineClosed",
    "LookupResult",
    "MatchingSettings",
    "MediaSettings",
    "ModelNotFound",
    "NegativeCache",
    "ObservabilitySettings",
    "PipelineSettings",
    "SemanticCache",
    "Settings",
    "StorageSettings",
    "StoreCorrupt",
    "StoreError",
    "SynthesisSettings",
    "Tier",
    "__version__",
    "freeze_gc",
]
