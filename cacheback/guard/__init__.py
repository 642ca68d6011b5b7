"""The hit guard: may a cached answer be served for a new question?

A plain cosine threshold serves near-misses as hits: "USD to EUR" and "EUR to USD",
"Python 3.11" and "3.12", today and tomorrow, a negated question, another city in
the same sentence. Sentence embeddings barely move for such edits, so the guard
compares what the two texts *pin down* (numbers, dates, units, currencies,
negation, direction, names, code identifiers, the language or format asked for)
and vetoes a hit when those differ. Everything here is pure and cheap: per-text
extraction is cached, a comparison is a few set operations.

The decision then rescales the similarity with a small logistic model over
lexical features (trained by ``scripts/train_guard.py``) so that the user's
threshold keeps its meaning on the cosine scale.

This package is public and stands alone: it imports nothing else from ``cacheback``.

- :func:`verbatim_decision` judges one pair and returns a :class:`Decision`;
- :func:`verbatim_rule` gives the callable the engine uses,
  ``(query, candidate, similarity, threshold) -> (hit, reasons)``;
- :func:`guard_reasons` lists the vetoes alone, :func:`filter_synthesis_candidates`
  applies them to synthesis candidates, :func:`word_overlap` is the router's tie-break;
- :func:`canonical_question` reduces request templates ("tell me about X") to one form,
  for the text that is embedded;
- :func:`pair_features`, :class:`GuardModel` and :func:`shipped_model` are the scorer,
  for training and evaluation.

Texts longer than :data:`MAX_ANALYSED_CHARS` are not analysed (the analysis grows faster
than the text): a pair with one is vetoed unless the two texts are identical.

The hand-written word lists the rules read are plain text files in ``data/`` (one
entry a line), shipped with the package and read once on import.
"""

from ._decision import (
    Decision,
    VerbatimRule,
    filter_synthesis_candidates,
    verbatim_decision,
    verbatim_rule,
)
from ._scorer import FEATURE_NAMES, GuardModel, pair_features, shipped_model
from ._templates import canonical_question
from ._veto import MAX_ANALYSED_CHARS, clear_caches, guard_reasons, word_overlap

__all__ = [
    "FEATURE_NAMES",
    "MAX_ANALYSED_CHARS",
    "Decision",
    "GuardModel",
    "VerbatimRule",
    "canonical_question",
    "clear_caches",
    "filter_synthesis_candidates",
    "guard_reasons",
    "pair_features",
    "shipped_model",
    "verbatim_decision",
    "verbatim_rule",
    "word_overlap",
]
