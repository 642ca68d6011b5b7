"""One bit set per lexicon word, so tokenising needs a single dict look-up per word."""

from __future__ import annotations

from ._lexicon_names import (
    _ALIASES,
    _CAPITALISED_LANGUAGES,
    _DEMONYMS,
    _FORMATS,
    _GAZETTEER,
    _NATURAL_LANGUAGES,
    _PROGRAMMING_LANGUAGES,
    _SHAPES,
    _STYLES,
)
from ._lexicon_quantities import (
    _CURRENCIES,
    _CURRENCY_QUALIFIERS,
    _MAGNITUDES,
    _MONTHS,
    _NUMBER_WORDS,
    _ORDINAL_WORDS,
    _PERIOD_QUALIFIERS,
    _RELATIVE_DAYS,
    _SINGLE_LETTER_UNITS,
    _UNITS,
    _WEEKDAYS,
)
from ._lexicon_words import _NEGATIONS, _OPPOSITE_WORDS_SET, _STOPWORDS

_F_STOP, _F_NEG, _F_SPECIAL = 1, 2, 4


def _lexicon_flags() -> dict[str, int]:
    special: set[str] = set()
    for table in (_OPPOSITE_WORDS_SET, _MONTHS, _WEEKDAYS, _RELATIVE_DAYS, _PERIOD_QUALIFIERS,
                  _UNITS, _CURRENCIES, _CURRENCY_QUALIFIERS, _NUMBER_WORDS, _ORDINAL_WORDS,
                  _NATURAL_LANGUAGES, _PROGRAMMING_LANGUAGES, _CAPITALISED_LANGUAGES,
                  _FORMATS, _SHAPES, _STYLES, _GAZETTEER, _ALIASES, _DEMONYMS,
                  _MAGNITUDES, _SINGLE_LETTER_UNITS):
        special.update(table)
    special.update({"morning", "afternoon", "evening", "night", "noon", "midnight", "am",
                    "pm", "v", "version"})
    flags: dict[str, int] = {}
    for w in _STOPWORDS:
        flags[w] = flags.get(w, 0) | _F_STOP
    for w in _NEGATIONS:
        flags[w] = flags.get(w, 0) | _F_NEG
    for w in special:
        flags[w] = flags.get(w, 0) | _F_SPECIAL
    return flags



_FLAGS = _lexicon_flags()
