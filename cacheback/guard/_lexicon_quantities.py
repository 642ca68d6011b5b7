"""Words for the values a question pins down: dates, units, currencies, counts. The lists
themselves are in ``data/`` (see :mod:`._wordlists`)."""

from __future__ import annotations

from ._wordlists import mapping, words

_MONTHS = mapping("months")
_AMBIGUOUS_MONTHS = words("ambiguous_months")
_WEEKDAYS = mapping("weekdays")
_RELATIVE_DAYS = mapping("relative_days")
_PERIODS = words("periods")
_PERIOD_QUALIFIERS = mapping("period_qualifiers")

_UNITS = mapping("units")
_UNIT_AFTER_NUMBER_ONLY = words("units_after_number_only")
_SINGLE_LETTER_UNITS = mapping("single_letter_units")
_DURATIONS = words("durations")

_CURRENCY_SYMBOLS = mapping("currency_symbols")
_CURRENCIES = mapping("currencies")
_AMBIGUOUS_CURRENCIES = words("ambiguous_currencies")
_CURRENCY_QUALIFIERS = mapping("currency_qualifiers")

_NUMBER_WORDS = mapping("number_words")
_ORDINAL_WORDS = mapping("ordinal_words")
_MAGNITUDES = {k: float(v) for k, v in mapping("magnitudes").items()}
