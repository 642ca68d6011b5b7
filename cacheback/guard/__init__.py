"""The hit guard and the calibrated verbatim decision.

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
"""

from ._decision import Decision, filter_synthesis_candidates, verbatim_decision

# loadtests/bench_guard.py clears this cache to time a cold lookup.
from ._extract import _features as _features
from ._scorer import FEATURE_NAMES, GuardModel, pair_features, shipped_model
from ._veto import guard_reasons, word_overlap

__all__ = [
    "FEATURE_NAMES",
    "Decision",
    "GuardModel",
    "filter_synthesis_candidates",
    "guard_reasons",
    "pair_features",
    "shipped_model",
    "verbatim_decision",
    "word_overlap",
]
