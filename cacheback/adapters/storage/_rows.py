"""Stored rows as the engine's types, the same for every SQL backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...core._types import CacheEntry, NegativeEntry, Vector


def loads_metadata(raw: object) -> dict[str, Any]:
    """An entry's metadata column: a JSON object ({} when empty or unreadable)."""
    if not raw or raw == "{}":  # most entries carry none: no parse for them
        return {}
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
