"""Why the text embedder is what it is: none at all, or a fallback (stats and /health)."""

from __future__ import annotations

from dataclasses import dataclass

from ._ports import Embedder

#: The reason when ``embedder=None`` was given: nothing failed, semantic matching is off.
NOT_GIVEN = "no text embedder (embedder=None): exact matches only"


@dataclass(frozen=True, slots=True)
class NoEmbedder:
    """What a default-embedder factory returns instead of None, to say why none can run."""

    reason: str


def embedder_reason(embedder: Embedder | None, absent: str | None) -> str | None:
    """Why the text embedder is not the full one: none runs (``absent``, the loader's
    reason), or it runs as a fallback (its own ``describe()["reason"]``); None when it is."""
    if embedder is None:
        return absent or NOT_GIVEN
    reason = embedder.describe().get("reason")
    return str(reason) if reason else None
