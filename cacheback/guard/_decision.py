"""The verbatim decision and the guard's filter on synthesis candidates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ._extract import _entry_features, _features
from ._scorer import GuardModel, _pair_features, pair_features, shipped_model
from ._veto import MAX_ANALYSED_CHARS, guard_reasons, word_overlap

T = TypeVar("T")

#: What the engine calls for each candidate: (query, candidate query, similarity,
#: threshold) -> (hit, reasons). Any callable of this shape can replace the guard.
VerbatimRule = Callable[[str, str, float, float], tuple[bool, tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class Decision:
    """A verbatim hit or not, the calibrated score it was judged on, the guard's reasons."""

    hit: bool
    score: float
    reasons: tuple[str, ...] = ()


def verbatim_decision(
    query: str,
    candidate: str,
    similarity: float,
    threshold: float = 0.92,
    *,
    guard: bool = True,
    model: GuardModel | None = None,
) -> Decision:
    """Whether ``candidate``'s cached answer may be served for ``query``.

    ``score`` is on the cosine scale (see :class:`GuardModel`) and the hit is
    ``score >= threshold`` with no guard veto, so raising the threshold only removes
    hits. ``guard=False`` is the plain cosine rule. ``model`` overrides the shipped
    scorer (for training and evaluation).
    """
    similarity = float(similarity)
    if not guard:
        return Decision(similarity >= threshold, similarity)
    if query == candidate:
        return Decision(similarity >= threshold, similarity)
    reasons = guard_reasons(query, candidate)
    scorer = model if model is not None else shipped_model()
    score = similarity if scorer is None else scorer.score(
        pair_features(query, candidate, similarity)
    )
    return Decision(not reasons and score >= threshold, score, reasons)


def verbatim_rule(*, guard: bool = True, model: GuardModel | None = None) -> VerbatimRule:
    """The engine's verbatim rule: :func:`verbatim_decision` as a plain callable.

    ``guard=False`` gives the plain cosine threshold. The shipped scorer is read here
    (a small file): call this off the event loop, as the engine does when it opens.
    """
    if not guard:

        def cosine(
            query: str, candidate: str, similarity: float, threshold: float
        ) -> tuple[bool, tuple[str, ...]]:
            return similarity >= threshold, ()

        return cosine
    return GuardRule(model if model is not None else shipped_model())


class GuardRule:
    """The guarded verbatim rule (see :func:`verbatim_rule`). ``word_overlap`` is the
    router's tie-break between near-equal accepted candidates, on the guard's words."""

    __slots__ = ("model",)

    def __init__(self, model: GuardModel | None) -> None:
        self.model = model

    def __call__(
        self, query: str, candidate: str, similarity: float, threshold: float
    ) -> tuple[bool, tuple[str, ...]]:
        if query != candidate and (self.model is None or type(self.model) is GuardModel):
            reasons = guard_reasons(query, candidate)
            # The shipped scorer only ever lowers the cosine: a vetoed pair or one below the
            # threshold is no hit whatever its score, so the score is not computed for it.
            similarity = float(similarity)
            if reasons or similarity < threshold:
                return False, reasons
            # What verbatim_decision does next, without asking guard_reasons again. Both
            # texts were analysed (neither is too long), so their analyses are at hand.
            scorer = self.model if self.model is not None else shipped_model()
            if scorer is None:
                return similarity >= threshold, ()
            features = _pair_features(_features(query), _entry_features(candidate), similarity)
            return scorer.score(features) >= threshold, ()
        d = verbatim_decision(query, candidate, similarity, threshold, model=self.model)
        return d.hit, d.reasons

    @staticmethod
    def word_overlap(query: str, candidate: str) -> float:
        return word_overlap(query, candidate)

    @staticmethod
    def prepare(texts: Sequence[str]) -> None:
        """Analyse questions as their answers are stored: the candidate side of the pairs
        later lookups judge, kept (bounded) with the cached questions' analyses, so no
        lookup pays for a candidate's first analysis. A question judged as a new one
        before its answer was stored is not analysed again. Same analyses, same answers."""
        for text in texts:
            if len(text) <= MAX_ANALYSED_CHARS:  # a longer one is never analysed
                _entry_features(text)


def filter_synthesis_candidates(
    query: str, candidates: Sequence[T], text_of: Callable[[T], str] | None = None
) -> list[T]:
    """The candidates a synthesis prompt may draw on: those the guard does not veto.

    An answer built from "Python 3.11" facts is as wrong for a "3.12" question as a
    verbatim hit would be. ``text_of`` gives a candidate's question text (default: the
    candidate itself if it is a string, else its ``entry.query``, as on
    :class:`~cacheback.core._types.Candidate`).
    """

    def text(c: T) -> str:
        if text_of is not None:
            return text_of(c)
        if isinstance(c, str):
            return c
        return str(c.entry.query)  # type: ignore[attr-defined]

    return [c for c in candidates if not guard_reasons(query, text(c))]
