"""Stored rows as the engine's types, the same for every SQL backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ...core._types import CacheEntry, NegativeEntry, Vector

#: Metadata texts up to this long are parsed once and remembered (see ``_flat``).
_REMEMBERED_CHARS = 256
_IMMUTABLE = (str, int, float, bool, type(None))


@lru_cache(maxsize=1024)
def _flat(raw: str) -> tuple[tuple[str, Any], ...] | None:
    """The items of a short metadata object whose values are all plain scalars, or None.
    Every lookup reads its candidates' rows again, and their metadata is most often the
    same few short objects ({"model": ...}): a fresh dict of remembered items is the
    same as parsing again, since no value can be changed in place."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, dict) and all(isinstance(v, _IMMUTABLE) for v in value.values()):
        return tuple(value.items())
    return None


def loads_metadata(raw: object) -> dict[str, Any]:
    """An entry's metadata column: a JSON object ({} when empty or unreadable)."""
    if not raw or raw == "{}":  # most entries carry none: no parse for them
        return {}
    if isinstance(raw, str) and len(raw) <= _REMEMBERED_CHARS:
        flat = _flat(raw)
        if flat is not None:
            return dict(flat)
    try:
        value = json.loads(str(raw))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def entry_from_row(row: Sequence[Any], vector: Vector | None = None) -> CacheEntry:
    """id, scope, query, answer, payload, created_at, expires_at, last_access, hits, metadata,
    hit_threshold (the entry's own verbatim threshold, NULL when it has none)."""
    return CacheEntry(
        id=int(row[0]),
        scope=row[1],
        query=row[2],
        answer=row[3],
        payload=None if row[4] is None else bytes(row[4]),
        created_at=float(row[5]),
        expires_at=float(row[6]),
        last_access=float(row[7]),
        hits=int(row[8]),
        metadata=loads_metadata(row[9]),
        vector=vector,
        hit_threshold=None if row[10] is None else float(row[10]),
    )


def negative_from_row(row: Sequence[Any]) -> NegativeEntry:
    """id, query, reason, category, severity, false_positives, created_at, metadata."""
    return NegativeEntry(
        id=int(row[0]),
        query=row[1],
        reason=row[2],
        category=row[3],
        severity=int(row[4]),
        false_positives=int(row[5]),
        created_at=float(row[6]),
        metadata=loads_metadata(row[7]),
    )
