"""Distinct paraphrases that the cache serves as verbatim hits, for latency benchmarks.

Each is a new string (no exact-hash shortcut), so a lookup runs the whole semantic path:
embedding, scoped search and the hit guard. Variants that the shipped decision would not
serve are screened out beforehand, so every timed lookup is a real semantic hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cacheback.guard import verbatim_decision

PREFIXES = [
    "",
    "Hi, ",
    "Hello! ",
    "Quick question: ",
    "Hey, ",
    "Please tell me: ",
    "Question: ",
    "I wonder, ",
    "Help: ",
    "Simple question: ",
]
SUFFIXES = [
    "",
    " Thanks.",
    " Thanks!",
    " Please.",
    " Cheers.",
    " Thank you.",
    " Any idea?",
    "??",
    " :)",
    " ?",
]


def semantic_hits(base: str, cached: str, embedder: Any, limit: int, threshold: float = 0.92) -> list[str]:
    """Up to ``limit`` variants of ``base`` that hit ``cached`` under the shipped decision."""
    body = base.rstrip("?").rstrip()
    candidates = [f"{p}{body}?{s}".strip() for p in PREFIXES for s in SUFFIXES]
    candidates = [c for c in dict.fromkeys(candidates) if c != cached]
    vectors = embedder.embed([*candidates, cached])
    sims = vectors[:-1] @ vectors[-1]
    keep = [
        c
        for c, sim in zip(candidates, sims, strict=True)
        if verbatim_decision(c, cached, float(sim), threshold).hit
    ]
    return keep[:limit]


def many_semantic_hits(pairs: Sequence[tuple[str, str]], embedder: Any, limit: int) -> list[str]:
    out: list[str] = []
    for base, cached in pairs:
        out.extend(semantic_hits(base, cached, embedder, limit))
    return out
