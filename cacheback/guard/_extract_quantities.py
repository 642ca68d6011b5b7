"""The feature builder's per-text state and its handling of numbers, versions, dates,
times, units and currencies; :mod:`._extract` adds words, names and order."""

from __future__ import annotations

import re

from ._lexicon_names import _GAZETTEER, _PROGRAMMING_LANGUAGES
from ._lexicon_quantities import (
    _CURRENCIES,
    _MAGNITUDES,
    _SINGLE_LETTER_UNITS,
    _UNITS,
)
from ._text import _Token

_THOUSANDS_RE = re.compile(r"^\d{1,3}(?:,\d{3})+$")
_NUM_SPLIT_RE = re.compile(r"^(\d+(?:[.,:]\d+)*)(.*)$")
_TIME_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)$")
_CLOCK_RE = re.compile(r"^\d{1,2}:\d{2}$")
# After these a unit or currency is the one asked for ("in euros", "how many km").
_MONEY_WORDS = frozenset({
    "money", "exchange", "currency", "sterling", "price", "cost", "gbp", "usd", "eur", "dollar",
    "dollars", "euro", "euros", "salary", "pay",
})
_TARGET_LEADS = frozenset({"to", "into", "in", "many", "much", "->", "→", "=>"})


def _number_value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _canonical_number(raw: str) -> str:
    if _THOUSANDS_RE.match(raw):
        raw = raw.replace(",", "")
    if raw.isdigit():
        return str(int(raw))
    return raw


class _QuantityBuilder:
    """Accumulates one text's features in a single pass over its tokens (state and quantities)."""

    def __init__(self, toks: list[_Token]) -> None:
        self.toks = toks
        self.words: list[str] = []
        self.stems: set[str] = set()
        self.content: set[str] = set()
        self.numbers: set[str] = set()
        self.spelled: set[str] = set()  # "two", "a dozen": a count in prose, not a value
        self.last_number: tuple[int, str, bool] | None = None
        self.versions: set[str] = set()
        self.ordinals: set[str] = set()
        self.written_ordinals: set[str] = set()  # in digits: "25th", never a figure of speech
        self.dates: set[str] = set()
        self.times: set[str] = set()
        self.units: set[str] = set()
        self.unit_targets: set[str] = set()
        self.currencies: set[str] = set()
        self.currency_targets: set[str] = set()
        self.slots: list[tuple[int, str]] = []
        self.entities: set[str] = set()
        self.code: set[str] = set()
        self.languages: set[str] = set()
        self.formats: set[str] = set()
        self.mentions: set[str] = set()
        self.styles: set[str] = set()
        self.opposites: set[str] = set()
        self.negated = False
        self.neg_heads: set[str] = set()
        self.neg_pending = 0  # words left in which to find the current negation's head
        self.passive: set[str] = set()
        self.runs: list[tuple[str, ...]] = []  # capitalised runs of 2 to 6 words
        self.asks: set[str] = set()
        self.order: list[str] = []
        self._money: bool | None = None  # see ``money_context``: read for "pound(s)" only
        # Words not first in a sentence, those of them capitalised, and those in capitals.
        inner = capitalised = shouted = 0
        for t in toks:
            if t.kind == "word" and not t.initial:
                first = t.text[:1]
                if first.isalpha():
                    inner += 1
                    capitalised += first.isupper()
                    shouted += t.text.isupper()
        # "How To Learn Python Fast", "WHY IS IT SO": capitals carry no information then.
        self.title_case = inner >= 3 and capitalised >= 0.6 * inner
        self.shouting = inner >= 3 and shouted >= 0.6 * inner

    @property
    def money_context(self) -> bool:
        """Whether the text is about money (a currency symbol or a money word): "pound" is
        then the currency. Worked out on first use only."""
        if self._money is None:
            self._money = any(t.kind == "cur" or t.low in _MONEY_WORDS for t in self.toks)
        return self._money

    def _target(self, i: int) -> bool:
        for t in self.toks[max(0, i - 2) : i]:
            if t.low in _TARGET_LEADS:
                return True
        return False

    def add_unit(self, i: int, unit: str) -> None:
        self.units.add(unit)
        self.slots.append((i, unit))
        if self._target(i):
            self.unit_targets.add(unit)

    def add_currency(self, i: int, cur: str) -> None:
        self.currencies.add(cur)
        self.slots.append((i, cur))
        if self._target(i):
            self.currency_targets.add(cur)

    def add_number(self, i: int, value: str, nxt: _Token | None, spelled: bool = False) -> None:
        # "1 kg", "one month", "a dollar": the default quantity says nothing.
        if value == "1" and nxt is not None and (nxt.low in _UNITS or nxt.low in _CURRENCIES):
            return
        (self.spelled if spelled else self.numbers).add(value)
        self.last_number = (i, value, spelled)

    def scale_number(self, i: int, factor: float, one_before: bool) -> None:
        """"5 million", "a hundred", "30k": one value, as "5000000" would be written."""
        last = self.last_number
        if last is not None and last[0] == i - 1:
            base = _number_value(last[1])
            (self.spelled if last[2] else self.numbers).discard(last[1])
            spelled = last[2]
        elif one_before:
            base, spelled = 1.0, True
        else:
            return  # "thousands of files": no value
        if base is None:
            return
        value = base * factor
        text = str(int(value)) if value.is_integer() else repr(value)
        (self.spelled if spelled else self.numbers).add(text)
        self.last_number = (i, text, spelled)

    def number_token(self, i: int, tok: _Token) -> None:
        toks = self.toks
        prev = toks[i - 1] if i > 0 else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        low = tok.low
        time_m = _TIME_RE.match(low)
        if time_m:
            self.times.add(f"{int(time_m.group(1))}:{time_m.group(2) or '00'}{time_m.group(3)}")
            return
        m = _NUM_SPLIT_RE.match(low)
        if m is None:  # pragma: no cover - the token pattern guarantees a leading digit
            return
        num, suffix = m.group(1), m.group(2)
        if nxt is not None and nxt.low in ("am", "pm") and num.isdigit() and int(num) <= 12:
            self.times.add(f"{int(num)}:00{nxt.low}")  # "7 am" is "7am"
            return
        if _CLOCK_RE.match(num):
            suffix_ampm = nxt.low if nxt is not None and nxt.low in ("am", "pm") else ""
            self.times.add(f"{int(num.split(':')[0])}:{num.split(':')[1]}{suffix_ampm}")
            return
        if suffix in ("st", "nd", "rd", "th"):
            ordinal = str(int(num)) if num.isdigit() else num
            self.ordinals.add(ordinal)
            self.written_ordinals.add(ordinal)
            return
        num = _canonical_number(num)
        after_name = prev is not None and prev.kind == "word" and (
            prev.low in _PROGRAMMING_LANGUAGES or prev.low in _GAZETTEER
            or prev.text[:1].isupper()
        )
        if num.count(".") >= 2 or (prev is not None and prev.low in ("v", "version")) or (
            "." in num and after_name  # "Python 3.11", "Django 4.2"
        ):
            self.versions.add(num)
        elif len(num) == 4 and num.isdigit() and 1900 <= int(num) <= 2100 and not suffix:
            self.dates.add(num)
        elif suffix in _MAGNITUDES and (suffix not in ("m", "b") or
                                        (prev is not None and prev.kind == "cur")):
            self.add_number(i, num, None)
            self.scale_number(i + 1, _MAGNITUDES[suffix], False)
        else:
            self.add_number(i, num, nxt)
        if not suffix or suffix in _MAGNITUDES:
            return
        if suffix in ("am", "pm"):
            self.times.add(f"{num}:00{suffix}")
        elif suffix in _UNITS:
            self.add_unit(i, _UNITS[suffix])
        elif suffix in _SINGLE_LETTER_UNITS:
            self.add_unit(i, _SINGLE_LETTER_UNITS[suffix])
        elif suffix in _CURRENCIES:
            self.add_currency(i, _CURRENCIES[suffix])
        elif suffix.startswith("°"):
            self.add_unit(i, "degc" if suffix.endswith("c") else "degf")
        elif suffix == "%":
            self.add_unit(i, "pct")
        else:
            # "8GB"-like glued units were handled; "1Z0-560", "h2" are model numbers.
            self.numbers.add(low)
