"""The tier decision: pure logic over candidates, callable without an event loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._types import Candidate, Tier

# (query, candidate query, similarity, threshold) -> (hit, reasons)
VerbatimRule = Callable[[str, str, float, float], tuple[bool, tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    tier: Tier
    best: Candidate | None = None
    candidates: tuple[Candidate, ...] = ()
    guard_reasons: tuple[str, ...] = ()


def cosine_rule(
    query: str, candidate: str, similarity: float, threshold: float
) -> tuple[bool, tuple[str, ...]]:
    """Plain cosine threshold (the guard turned off)."""
    return similarity >= threshold, ()


def route(
    query: str,
    candidates: Sequence[Candidate],
    *,
    similarity_threshold: float,
    synthesis_threshold: float,
    synthesis_mode: str,
    verbatim_rule: VerbatimRule = cosine_rule,
) -> RouteDecision:
    """Choose the tier for a query given its scoped candidates (best first).

    - verbatim: the first candidate (by similarity) that the verbatim rule accepts;
    - synthesis: mode ``always``, or mode ``auto`` without a verbatim hit, and candidates
      at or above ``synthesis_threshold`` (those are returned, guard reasons attached);
    - miss otherwise.
    """
    checked: list[Candidate] = []
    best: Candidate | None = None
    first_reasons: tuple[str, ...] = ()
    for cand in candidates:
        if cand.similarity < min(similarity_threshold, synthesis_threshold):
            checked.append(cand)
            continue
        hit, reasons = verbatim_rule(query, cand.entry.query, cand.similarity, similarity_threshold)
        cand = Candidate(cand.entry, cand.similarity, reasons)
        checked.append(cand)
        if hit and best is None:
            best = cand
        elif not hit and not first_reasons and cand.similarity >= similarity_threshold:
            first_reasons = reasons
    synth = tuple(c for c in checked if c.similarity >= synthesis_threshold)
    if synthesis_mode == "always" and synth:
        return RouteDecision(Tier.SYNTHESIS, best, synth, first_reasons)
    if best is not None:
        return RouteDecision(Tier.VERBATIM, best, tuple(checked), best.guard_reasons)
    if synthesis_mode == "auto" and synth:
        return RouteDecision(Tier.SYNTHESIS, None, synth, first_reasons)
    return RouteDecision(Tier.MISS, None, tuple(checked), first_reasons)
