"""The exception tree. Foreign exceptions are mapped to these only at adapter boundaries.

CachebackError
├── ConfigError            bad settings or arguments
├── CachebackBlocked       the negative cache refused a query (the one deliberate raise)
├── EngineClosed           the engine is not running
│   └── UpstreamCancelled  an upstream call cancelled: the engine closed, or nobody waits
├── StoreError             the store failed (callers degrade to upstream)
│   └── StoreCorrupt       a database or index file could not be read
└── EmbedderError          the embedder could not load or run
    └── ModelNotFound      no model files where they were looked for
"""

from __future__ import annotations

from typing import Any


class CachebackError(Exception):
    """Base class of every error cacheback raises on purpose."""


class ConfigError(CachebackError, ValueError):
    pass


class CachebackBlocked(CachebackError):
    """Raised when the negative cache matches a query and the client is set to raise."""

    def __init__(self, match: Any) -> None:
        self.match = match
        reason = getattr(match, "reason", "blocked")
        super().__init__(f"query blocked by the negative cache: {reason}")

    @property
    def reason(self) -> str:
        return str(getattr(self.match, "reason", "blocked"))


class EngineClosed(CachebackError, RuntimeError):
    pass


class UpstreamCancelled(EngineClosed):
    """An upstream call cancelled because the engine closed, or because nobody waits for it."""


class StoreError(CachebackError):
    pass


class StoreCorrupt(StoreError):
    pass


class EmbedderError(CachebackError):
    pass


class ModelNotFound(EmbedderError):
    pass
