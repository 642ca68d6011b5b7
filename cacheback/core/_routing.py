"""The tier decision: pure logic over candidates, callable without an event loop."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ._feedback import FEEDBACK_REASON, passes_entry_threshold
from ._types import Candidate, Tier

# (query, candidate query, similarity, threshold) -> (hit, reasons)
VerbatimRule = Callable[[str, str, float, float], tuple[bool, tuple[str, ...]]]

#: Accepted candidates whose similarity is within this of the nearest accepted one are a
#: near-tie for the embedder (its cosine does not separate paraphrases that finely) ...
TIE_MARGIN = 0.02
#: ... and, with the guard on, compete on similarity plus this much of their word overlap
#: with the query (0.1 more overlap is worth 0.01 of cosine).
TIE_WORD_WEIGHT = 0.1
#: The tie-break reads at most this many characters of each text (it runs per candidate).
TIE_TEXT_CHARS = 2000
_WORD_RE = re.compile(r"\w+")


#: What a rule may also offer (the guard's does): analyse stored questions as their answers
#: are written, ahead of the lookups that will judge them (see :func:`stored_texts_hook`).
StoredTextsHook = Callable[[Sequence[str]], None]


def stored_texts_hook(rule: VerbatimRule) -> StoredTextsHook | None:
    """The rule's ``prepare(texts)``, or None when it has none (the cosine rule)."""
    prepare = getattr(rule, "prepare", None)
    return prepare if callable(prepare) else None


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

    - verbatim: the first candidate (by similarity) that passes its entry's own threshold
      (learned from feedback, :mod:`._feedback`) and that the verbatim rule accepts; a
      candidate at or above the threshold that fails its entry's own threshold ends the
      search (the query is where a reported wrong hit was: a less similar entry is not
      served there either), with the reason ``feedback`` for it and those after it; unless
      the rule is :func:`cosine_rule`, an accepted candidate within :data:`TIE_MARGIN` of
      it may win instead on similarity plus :data:`TIE_WORD_WEIGHT` times its word
      overlap with the query (exact ties keep the nearer one); the overlap is the rule's
      own ``word_overlap(query, candidate)`` if it has one (the guard's rule does), else
      :func:`word_overlap`;
    - synthesis: mode ``always``, or mode ``auto`` without a verbatim hit, and candidates
      at or above ``synthesis_threshold`` (those are returned, guard reasons attached);
    - miss otherwise.
    """
    checked: list[Candidate] = []
    accepted: list[Candidate] = []
    first_reasons: tuple[str, ...] = ()
    fenced = False
    reasons: tuple[str, ...]
    for cand in candidates:
        if cand.similarity < min(similarity_threshold, synthesis_threshold):
            checked.append(cand)
            continue
        if fenced:
            hit, reasons = False, (FEEDBACK_REASON,)
        elif passes_entry_threshold(cand.similarity, cand.entry.hit_threshold):
            hit, reasons = verbatim_rule(query, cand.entry.query, cand.similarity, similarity_threshold)
        else:  # the rule's text analysis is not needed: this entry is ruled out here
            hit, reasons = False, (FEEDBACK_REASON,)
            # Falling through to the next candidate served more wrong hits in the replay
            # of the development sets (loadtests/sim_feedback.py) than stopping here.
            fenced = cand.similarity >= similarity_threshold
        cand = Candidate(cand.entry, cand.similarity, reasons)
        checked.append(cand)
        if hit:
            accepted.append(cand)
        elif not first_reasons and cand.similarity >= similarity_threshold:
            first_reasons = reasons
    best = (
        _break_tie(query, accepted, getattr(verbatim_rule, "word_overlap", word_overlap))
        if verbatim_rule is not cosine_rule
        else (accepted[0] if accepted else None)
    )
    synth = tuple(c for c in checked if c.similarity >= synthesis_threshold)
    if synthesis_mode == "always" and synth:
        return RouteDecision(Tier.SYNTHESIS, best, synth, first_reasons)
    if best is not None:
        return RouteDecision(Tier.VERBATIM, best, tuple(checked), best.guard_reasons)
    if synthesis_mode == "auto" and synth:
        return RouteDecision(Tier.SYNTHESIS, None, synth, first_reasons)
    return RouteDecision(Tier.MISS, None, tuple(checked), first_reasons)


def _break_tie(
    query: str, accepted: Sequence[Candidate], overlap: Callable[[str, str], float]
) -> Candidate | None:
    """The first accepted candidate, or a near-equal one that matches the query's wording
    better (see :data:`TIE_MARGIN`)."""
    if len(accepted) < 2:
        return accepted[0] if accepted else None
    first = accepted[0]
    tied = [c for c in accepted if first.similarity - c.similarity <= TIE_MARGIN]
    if len(tied) < 2:
        return first
    # max() keeps the first of equal keys, so an exact tie keeps the nearer candidate.
    return max(tied, key=lambda c: c.similarity + TIE_WORD_WEIGHT * overlap(query, c.entry.query))


@lru_cache(maxsize=4096)
def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD_RE.findall(text.lower()))


def word_overlap(a: str, b: str) -> float:
    """The tie-break's default: Jaccard overlap of the two texts' lower-cased words (of their first
    :data:`TIE_TEXT_CHARS` characters), in [0, 1]."""
    wa, wb = _words(a[:TIE_TEXT_CHARS]), _words(b[:TIE_TEXT_CHARS])  # bounded cache keys
    union = len(wa | wb)
    return len(wa & wb) / union if union else 1.0
