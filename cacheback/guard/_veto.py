"""The hit guard: the veto rules run over two texts' features, in a fixed order."""

from __future__ import annotations

from functools import lru_cache

from ._extract import _features
from ._features import _Features
from ._rules_direction import _direction_reasons, _flips, _opposite_reasons
from ._rules_names import _name_reasons
from ._rules_quantities import _quantity_reasons
from ._sets import _jaccard
from ._word_order import _direction

# Content-word Jaccard above which two texts count as "the same words": only then do
# negation, question words and one-sided names count (a heavy rewrite moves them freely).
_CLOSE_JACCARD = 0.5


def _guard(qf: _Features, cf: _Features) -> list[str]:
    close = _jaccard(qf.content, cf.content) >= _CLOSE_JACCARD
    # "A slower than B" / "B faster than A": a swap and an opposite cancel out.
    flips = _flips(qf, cf)
    swapped = _direction(qf, cf, close)
    # The opposite-word reason comes last so reasons keep the order they always had.
    return [
        *_quantity_reasons(qf, cf),
        *_direction_reasons(qf, cf, close, flips, swapped),
        *_name_reasons(qf, cf, close),
        *_opposite_reasons(qf, cf, flips, swapped),
    ]


@lru_cache(maxsize=16384)
def guard_reasons(query: str, candidate: str) -> tuple[str, ...]:
    """Why serving ``candidate``'s answer for ``query`` would be wrong; empty if no veto.

    Reasons are short and machine-readable, e.g. ``"number:3.11!=3.12"``,
    ``"date:today!=tomorrow"``, ``"negation"``, ``"direction"``,
    ``"entity:paris!=london"``; the left side is the query's.
    """
    if query == candidate:
        return ()
    return tuple(_guard(_features(query), _features(candidate)))


def word_overlap(query: str, candidate: str) -> float:
    """Jaccard overlap of the two texts' lower-cased words, in [0, 1].

    The router's tie-break: when two accepted candidates are equally near by the
    embedding, the one worded most like the query is most likely the same question.
    """
    return _jaccard(_features(query).word_set, _features(candidate).word_set)


def clear_caches() -> None:
    """Forget every memoised text analysis and pair verdict (benchmarks time a cold call)."""
    guard_reasons.cache_clear()
    _features.cache_clear()
