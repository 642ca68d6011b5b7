"""Set helpers shared by the rules: overlap, and how a reason prints a set."""

from __future__ import annotations

from collections.abc import Iterable


def _fmt(values: Iterable[str]) -> str:
    vals = sorted(values)
    return ",".join(vals) if vals else "-"


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0
