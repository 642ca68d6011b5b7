"""The hit guard: the veto rules run over two texts' features, in a fixed order."""

from __future__ import annotations

from functools import lru_cache

from ._extract import _entry_features, _features
from ._features import _Features
from ._rules_direction import _direction_reasons, _flips, _opposite_reasons
from ._rules_names import _name_reasons
from ._rules_qualifiers import _qualifier_reasons
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
        *_qualifier_reasons(qf, cf, close),
        *_opposite_reasons(qf, cf, flips, swapped),
    ]


#: The guard analyses texts of at most this many characters. Its analysis grows faster
#: than the text (a pair of 2,000-character texts costs up to ~0.1 s, of 4,000 up to
#: ~0.5 s), so a longer text is never analysed: a pair with one is vetoed
#: (``"too_long:query"``, ``"too_long:candidate"`` or ``"too_long:both"``) unless the
#: two texts are identical. The embedder reads only a text's first few hundred tokens,
#: so two long prompts that differ after that look identical to it; serving a hit the
#: guard could not check would be a wrong answer. Long prompts still get exact hits.
MAX_ANALYSED_CHARS = 2000


def _too_long(query: str, candidate: str) -> str | None:
    q, c = len(query) > MAX_ANALYSED_CHARS, len(candidate) > MAX_ANALYSED_CHARS
    if q and c:
        return "too_long:both"
    return "too_long:query" if q else "too_long:candidate" if c else None


def bounded(text: str) -> str:
    """At most :data:`MAX_ANALYSED_CHARS` of ``text``: its start and its end (for the soft
    signals, overlap and the scorer's features, which never approve a hit alone)."""
    if len(text) <= MAX_ANALYSED_CHARS:
        return text
    half = MAX_ANALYSED_CHARS // 2
    return f"{text[:half]}\n{text[-half:]}"


def guard_reasons(query: str, candidate: str) -> tuple[str, ...]:
    """Why serving ``candidate``'s answer for ``query`` would be wrong; empty if no veto.

    Reasons are short and machine-readable, e.g. ``"number:3.11!=3.12"``,
    ``"date:today!=tomorrow"``, ``"negation"``, ``"direction"``,
    ``"entity:paris!=london"``; the left side is the query's. Texts longer than
    :data:`MAX_ANALYSED_CHARS` are not analysed and always vetoed unless identical.
    """
    if query == candidate:
        return ()
    too_long = _too_long(query, candidate)
    if too_long is not None:  # not analysed, and not cached (the cache would pin big texts)
        return (too_long,)
    return _guard_reasons(query, candidate)


@lru_cache(maxsize=16384)
def _guard_reasons(query: str, candidate: str) -> tuple[str, ...]:
    return tuple(_guard(_features(query), _entry_features(candidate)))


def word_overlap(query: str, candidate: str) -> float:
    """Jaccard overlap of the two texts' lower-cased words, in [0, 1] (of their first and
    last :data:`MAX_ANALYSED_CHARS` characters in all, see :func:`bounded`).

    The router's tie-break: when two accepted candidates are equally near by the
    embedding, the one worded most like the query is most likely the same question.
    """
    return _jaccard(_features(bounded(query)).word_set, _entry_features(bounded(candidate)).word_set)


def clear_caches() -> None:
    """Forget every memoised text analysis and pair verdict (benchmarks time a cold call)."""
    _guard_reasons.cache_clear()
    _features.cache_clear()
    _entry_features.cache_clear()
