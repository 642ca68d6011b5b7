"""Feature extraction: one pass over a text's tokens, cached per text."""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Any, TypeVar

from ._extract_quantities import _QuantityBuilder
from ._features import _UNSCOPED, _Features
from ._flags import _F_NEG, _F_SPECIAL, _F_STOP, _FLAGS
from ._lexicon_names import (
    _ALIASES,
    _CAPITALISED_LANGUAGES,
    _COMMON_ACRONYMS,
    _COMMON_WORD_NAMES,
    _DEMONYMS,
    _FORMATS,
    _GAZETTEER,
    _GENERATIVE_VERBS,
    _NATURAL_LANGUAGES,
    _PROGRAMMING_LANGUAGES,
    _SHAPE_FILLERS,
    _SHAPE_LEADS,
    _SHAPES,
    _STYLES,
)
from ._lexicon_quantities import (
    _AMBIGUOUS_CURRENCIES,
    _AMBIGUOUS_MONTHS,
    _CURRENCIES,
    _CURRENCY_QUALIFIERS,
    _CURRENCY_SYMBOLS,
    _MAGNITUDES,
    _MONTHS,
    _NUMBER_WORDS,
    _ORDINAL_WORDS,
    _PERIOD_QUALIFIERS,
    _PERIODS,
    _RELATIVE_DAYS,
    _SINGLE_LETTER_UNITS,
    _UNIT_AFTER_NUMBER_ONLY,
    _UNITS,
    _WEEKDAYS,
)
from ._lexicon_words import (
    _AUXILIARIES,
    _BE,
    _COPULAS,
    _DIRECTION_MARKERS,
    _IRREGULAR_PARTICIPLES,
    _OPPOSITE_WORDS_SET,
    _STOPWORDS,
    _SYMMETRIC,
    _SYMMETRIC_MARK,
    _WH_DETERMINERS,
    _WH_LEADS,
    _WH_OF_NOUN,
    _WH_PHRASE_LEADS,
    _WH_WORDS,
    _participle,
)
from ._text import _normalise, _stem, _Token, _tokenise

_CAMEL_RE = re.compile(r"[a-z][A-Z]")
_NUM_WORD_RE = re.compile(r"^(\d+)-([a-z]+)$")
_VERSION_WORD_RE = re.compile(r"^v(\d+(?:\.\d+)*)$")
_LEAD_ALPHA_RE = re.compile(r"^[a-z+#]+")
_IDENT_PART_RE = re.compile(r"[A-Za-z0-9]+")
_CONVERSION_LINKS = frozenset({"to", "into", "in", "->", "→", "=>", "as", "=", "for"})
_ONE = frozenset({"1", "one", "a", "an", "per", "each", "every"})
_SHORT_UNIT_MAX = 3
# Negation scope: the cue applies to the first content word within this many words.
_NEG_SCOPE = 4
_MAX_RUN = 6  # longer capitalised runs are title case, not a name
_PASSIVE_REACH = 3  # words between "is" and its participle ("is the deadline mentioned")


def _is_code_identifier(raw: str) -> bool:
    if raw.isalpha():  # most words: only camelCase can make one code
        return not raw.islower() and raw[:1].islower() and bool(_CAMEL_RE.search(raw))
    if raw.endswith("()") or "_" in raw.strip("_") or raw.startswith("__"):
        return True
    if "." in raw:
        parts = raw.split(".")
        # "e.g." and "U.S." are abbreviations, "node.js" a name.
        return any(len(p) > 1 for p in parts) and raw.lower() not in _PROGRAMMING_LANGUAGES
    # camelCase; PascalCase names ("GitHub") are treated as names instead.
    return raw[:1].islower() and bool(_CAMEL_RE.search(raw))


class _Builder(_QuantityBuilder):
    """Accumulates one text's features in a single pass over its tokens."""

    def _asked_shape(self, i: int) -> bool:
        """Whether the shape word at ``i`` is what the text asks for."""
        k = i - 1
        while k >= 0 and self.toks[k].low in _SHAPE_FILLERS:
            k -= 1
        if k < 0 or i - k > 3:
            return False
        lead = self.toks[k].low
        return lead in _SHAPE_LEADS or lead in _GENERATIVE_VERBS

    def alnum_word(self, i: int, tok: _Token) -> None:
        """A word with digits: "python3.11", "es6", "ipv4", "gpt-4", "v2", "4-year"."""
        low = tok.low
        m2 = _NUM_WORD_RE.match(low)
        if m2:
            self.numbers.add(str(int(m2.group(1))))
            unit = _UNITS.get(m2.group(2))
            if unit:
                self.add_unit(i, unit)
            self.plain_word(m2.group(2))
            return
        m3 = _VERSION_WORD_RE.match(low)
        if m3:
            self.versions.add(m3.group(1))
            return
        lead = _LEAD_ALPHA_RE.match(low)
        if lead and lead.group() in _PROGRAMMING_LANGUAGES:
            self.name(_PROGRAMMING_LANGUAGES[lead.group()], language=True)
            rest = low[lead.end() :].lstrip("-")
            if rest:
                self.versions.add(rest)
            return
        if lead and "-" in low and lead.group().rstrip("-") in _GAZETTEER:
            self.name(lead.group().rstrip("-"))
        self.numbers.add(low)

    def name(self, value: str, language: bool = False) -> None:
        """A name: a place, product or person, or a language."""
        (self.languages if language else self.entities).add(value)

    def plain_word(self, low: str, flags: int | None = None) -> None:
        """A word (``flags``: its ``_FLAGS``, looked up here when not given)."""
        words = self.words
        if (
            (low.endswith(("ed", "en")) or low in _IRREGULAR_PARTICIPLES)  # _participle(low)
            and _BE.intersection(words[-_PASSIVE_REACH:])
        ) or (
            low == "by" and words and _participle(words[-1])
        ):
            # "is mentioned", "was quickly sold", "is the deadline mentioned", "(did the
            # firm get) acquired by": only a verb passive in one text of the two counts,
            # so an adjective such as "talented" on both sides changes nothing.
            self.passive.add(_stem(words[-1] if low == "by" else low))
        words.append(low)
        stem = _stem(low)
        self.stems.add(stem)
        if flags is None:
            flags = _FLAGS.get(low, 0)
        if flags & _F_NEG:
            self.negate()
            return
        if self.neg_pending:
            self.neg_pending -= 1
            if not flags & _F_STOP:
                self.neg_heads.add(stem)
                self.neg_pending = 0
            elif not self.neg_pending:
                self.neg_heads.add(_UNSCOPED)
        if low in _SYMMETRIC:
            self.order.append(_SYMMETRIC_MARK)
        elif not flags & _F_STOP:
            self.content.add(stem)
            self.order.append(stem)
        elif low in _DIRECTION_MARKERS:
            self.order.append(low)

    def negate(self) -> None:
        if self.neg_pending:
            self.neg_heads.add(_UNSCOPED)  # "not without": two cues, no word between
        self.negated = True
        self.neg_pending = _NEG_SCOPE

    def head_token(self, low: str) -> None:
        """A number or identifier right after a negation is what it negates."""
        if self.neg_pending:
            self.neg_heads.add(low)
            self.neg_pending = 0

    def note_run(self, run: list[str]) -> None:
        """A run of capitalised words: each may be matched by the initials of the run or
        of a part of it ("Natural Language Processing" / "NLP")."""
        if 2 <= len(run) <= _MAX_RUN:
            self.runs.append(tuple(run))  # the acronyms are derived on first use

    def special_word(self, i: int, tok: _Token) -> None:
        """Lexicon look-ups for a word that is in some lexicon."""
        toks = self.toks
        low = tok.low
        prev = toks[i - 1] if i > 0 else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        after_number = prev is not None and (prev.kind == "num" or prev.low in _NUMBER_WORDS)
        after_one = prev is not None and prev.low in _ONE
        capital = tok.text[:1].isupper() and not tok.initial

        number = _NUMBER_WORDS.get(low)
        if number is not None:
            if low in _MAGNITUDES:
                self.scale_number(i, _MAGNITUDES[low], after_one)
            elif low in ("half", "quarter", "double", "single", "once", "twice", "triple",
                         "thrice"):
                if nxt is not None and (nxt.low in _UNITS or nxt.low in _CURRENCIES):
                    self.add_number(i, number, nxt, spelled=True)
            else:
                self.add_number(i, number, nxt, spelled=True)
        ordinal = _ORDINAL_WORDS.get(low)
        if ordinal is not None and not (low == "second" and (after_number or after_one)):
            self.ordinals.add(ordinal)

        if low in _RELATIVE_DAYS:
            self.dates.add(_RELATIVE_DAYS[low])
        elif low in _WEEKDAYS:
            self.dates.add(_WEEKDAYS[low])
        elif low in _MONTHS and (
            (low not in _AMBIGUOUS_MONTHS and (len(low) > 3 or tok.text[:1].isupper()))
            or capital
            or (nxt is not None and nxt.kind == "num")
            or (prev is not None and prev.kind == "num")
        ):
            self.dates.add(_MONTHS[low])
        if low in _PERIOD_QUALIFIERS and nxt is not None and _stem(nxt.low) in _PERIODS:
            self.dates.add(f"{_PERIOD_QUALIFIERS[low]}-{_stem(nxt.low)}")
        if low in ("morning", "afternoon", "evening", "night", "noon", "midnight"):
            self.times.add(low)

        unit = _UNITS.get(low)
        if unit is not None and not (low in ("pound", "pounds") and self.money_context):
            short = len(low) <= _SHORT_UNIT_MAX or low in _UNIT_AFTER_NUMBER_ONLY
            if not short or after_number or after_one or self._target(i):
                self.add_unit(i, unit)
        elif low in _SINGLE_LETTER_UNITS and prev is not None and prev.kind == "num":
            self.add_unit(i, _SINGLE_LETTER_UNITS[low])
        cur = _CURRENCIES.get(low)
        if low in ("pound", "pounds") and self.money_context:
            cur = "gbp"
        if cur is not None and (
            low not in _AMBIGUOUS_CURRENCIES or after_number
            or (tok.text.isupper() and len(low) == 3)
        ):
            if prev is not None and prev.low in _CURRENCY_QUALIFIERS and cur == "usd":
                cur = _CURRENCY_QUALIFIERS[prev.low]
            self.add_currency(i, cur)

        if low in _PROGRAMMING_LANGUAGES:
            self.name(_PROGRAMMING_LANGUAGES[low], language=True)
        elif low in _CAPITALISED_LANGUAGES and capital and (
            prev is None or not prev.text[:1].isupper()  # "Taylor Swift", "Pokemon Go"
        ) and (
            len(low) > 2
            or (prev is not None and prev.low in ("in", "using", "with", "learn", "write"))
            or (nxt is not None and nxt.low in ("code", "programming", "language", "program",
                                                "developer", "developers", "compiler"))
        ):
            self.name(_CAPITALISED_LANGUAGES[low], language=True)
        if low in _NATURAL_LANGUAGES or low in _DEMONYMS:
            self.name(_DEMONYMS.get(low, low), language=True)

        if low in _FORMATS:
            self.formats.add(_FORMATS[low])
            self.mentions.add(_FORMATS[low])
        elif low in _SHAPES:
            self.mentions.add(_SHAPES[low])
            if self._asked_shape(i):
                self.formats.add(_SHAPES[low])
        if low in _STYLES:
            self.styles.add(_STYLES[low])
        if low in _OPPOSITE_WORDS_SET:
            self.opposites.add(low)
        if (low in _GAZETTEER or low in _ALIASES) and (
            low not in _COMMON_WORD_NAMES or tok.text[:1].isupper()
        ):
            self.name(_ALIASES.get(low, low))

    def name_shape(self, tok: _Token, last_item: bool = False) -> None:
        """A capitalised word mid-sentence, an acronym or an "iPhone" is a name."""
        low = tok.low
        text = tok.text
        if low in _COMMON_ACRONYMS:
            return
        if len(low) == 2 and text.isupper() and not self.shouting and not tok.initial:
            # "IN", "GA", "IT", "US": two capitals are an abbreviation even when they spell
            # a common word (kept in capitals then, so the word "in" does not match "IN").
            self.name(_ALIASES.get(low) or (text if low in _STOPWORDS else low))
            return
        if low in _STOPWORDS or low == "i" or low in _MONTHS or low in _WEEKDAYS:
            return
        if low in _UNITS or low in _CURRENCIES or low in _NATURAL_LANGUAGES:
            return
        if low.endswith("ing") and low not in _GAZETTEER:
            return  # "Planting, Watering, ...": capitalised gerunds are list items
        # A list item after a comma is capitalised like a sentence start ("Overview, Load").
        # So is the last one, after ", and" ("Plant a tree, and Water it").
        initial = tok.initial or tok.sep or last_item
        upper = text.isupper() and len(low) > 1 and not self.shouting
        if (upper and not (initial and len(low) > 5)) or (
            not self.title_case and not initial and text[:1].isupper()
        ) or (initial and _CAMEL_RE.search(text)):
            self.name(_ALIASES.get(low, low))

    def build(self) -> _Features:
        toks = self.toks
        run: list[str] = []
        for i, tok in enumerate(toks):
            kind = tok.kind
            low = tok.low
            text = tok.text
            if tok.sep:
                self.order.append(_SYMMETRIC_MARK)
            # A lower-case word (most of them) is no code identifier and starts no run.
            plain = text.islower() and text.isalpha()
            capital = not plain and kind == "word" and text[:1].isupper() and low.isalpha()
            if capital and not tok.sep and (run or low not in _STOPWORDS):
                run.append(low)
            elif run or capital:
                if len(run) > 1:
                    self.note_run(run)
                run = [low] if capital and low not in _STOPWORDS else []
            if kind != "word":
                self.head_token(low)
            if kind == "word":
                if (
                    not plain
                    and _is_code_identifier(text)
                    and low not in _PROGRAMMING_LANGUAGES
                    and not _VERSION_WORD_RE.match(low)
                ):
                    self.code.add(low.removesuffix("()"))
                    self.order.append(low.removesuffix("()"))
                    self.head_token(low.removesuffix("()"))
                    for part in _IDENT_PART_RE.findall(low):
                        self.stems.add(_stem(part))
                    continue
                if not low.isalpha() and any(ch.isdigit() for ch in low):
                    self.alnum_word(i, tok)
                    continue
                flags = _FLAGS.get(low, 0)
                self.plain_word(low, flags)
                if i < 2:  # a question word asks only first (or after a lead word)
                    if (
                        low in _WH_WORDS
                        and (i == 0 or (i == 1 and toks[0].low in _WH_LEADS))
                        and i + 1 < len(toks)
                        and toks[i + 1].low in _AUXILIARIES
                    ):
                        # "When is X?" asks for a time; "When you access X, ..." does not.
                        self.asks.add(low)
                    elif (
                        low in _WH_DETERMINERS
                        and (i == 0 or (i == 1 and toks[0].low in _WH_PHRASE_LEADS))
                        and i + 2 < len(toks)
                        and toks[i + 1].low in _WH_OF_NOUN
                        and toks[i + 2].low in _AUXILIARIES
                    ):
                        # "In what year was X built?" asks what "When was X built?" asks.
                        self.asks.add(_WH_OF_NOUN[toks[i + 1].low])
                if flags & _F_SPECIAL:
                    self.special_word(i, tok)
                if text[:1].isupper() or not text.islower():
                    prev = toks[i - 1] if i else None
                    self.name_shape(
                        tok, prev is not None and prev.sep and prev.low in ("and", "or")
                    )
            elif kind == "num":
                for part in tok.low.split("/"):
                    self.number_token(i, _Token(part, part, "num", tok.initial))
            elif kind == "cur":
                self.add_currency(i, _CURRENCY_SYMBOLS[tok.text])
            elif kind == "op":
                self.code.add(tok.text)
            else:  # backticked code
                ident = tok.text.strip("`").strip().lower()
                self.code.add(ident.removesuffix("()"))
                self.order.append(ident.removesuffix("()"))
                for part in _IDENT_PART_RE.findall(ident):
                    self.stems.add(_stem(part))
        self.note_run(run)
        if self.neg_pending:
            self.neg_heads.add(_UNSCOPED)
        words = tuple(self.words)
        word_set = frozenset(words)
        order = tuple(self.order)
        numbers, spelled, versions = _frozen(self.numbers), _frozen(self.spelled), _frozen(
            {v for v in self.versions if v}
        )
        ordinals, dates, times = _frozen(self.ordinals), _frozen(self.dates), _frozen(self.times)
        units, currencies = _frozen(self.units), _frozen(self.currencies)
        quantities = (numbers | spelled, versions, ordinals, dates, times, units, currencies)
        return _Features(
            words=words,
            word_set=word_set,
            title_case=self.title_case,
            order=order,
            stems=frozenset(self.stems),
            content=_frozen(self.content),
            numbers=numbers,
            spelled=spelled,
            versions=versions,
            ordinals=ordinals,
            written_ordinals=_frozen(self.written_ordinals),
            dates=dates,
            times=times,
            units=units,
            unit_targets=_frozen(self.unit_targets),
            currencies=currencies,
            currency_targets=_frozen(self.currency_targets),
            conversions=self._conversions() if len(self.slots) > 1 else _EMPTY,
            routes=self._routes() if "from" in word_set else _EMPTY,
            negated=self.negated,
            neg_heads=_frozen(self.neg_heads),
            passive=_frozen(self.passive),
            runs=tuple(self.runs),
            asks=_frozen(self.asks),
            entities=_frozen(self.entities),
            code=_frozen(self.code),
            languages=_frozen(self.languages),
            formats=_frozen(self.formats),
            mentions=_frozen(self.mentions),
            styles=_frozen(self.styles),
            opposites=_frozen(self.opposites),
            quantities=_NO_QUANTITIES if not any(quantities) else quantities,
            # (``or _EMPTY``: an empty intersection is a new tracked object otherwise.)
            markers=_DIRECTION_MARKERS & word_set or _EMPTY,
            copulas=_COPULAS & word_set or _EMPTY,
            order_sorted=tuple(sorted(order)),
        )

    def _conversions(self) -> frozenset[tuple[str, str]]:
        """(from, to) pairs of units or currencies: "USD to EUR", "how many km in 5 miles"."""
        toks, slots = self.toks, self.slots
        pairs: set[tuple[str, str]] = set()
        for (i, a), (j, b) in itertools.pairwise(slots):
            if a == b:
                continue
            between = {t.low for t in toks[i + 1 : j]}
            if i > 0 and toks[i - 1].low in ("many", "much"):
                # "how many euros is a dollar": the unit asked for comes first.
                pairs.add((b, a))
            elif between & _CONVERSION_LINKS:
                pairs.add((a, b))
        return _frozen(pairs)

    def _routes(self) -> frozenset[tuple[str, str]]:
        """"from A to B" and "to B from A", as (A, B)."""
        toks = self.toks
        lows = [t.low for t in toks]
        if "from" not in lows:
            return _EMPTY
        out: set[tuple[str, str]] = set()

        def next_content(k: int) -> str | None:
            for t in toks[k + 1 : k + 4]:
                if t.kind != "word" or t.low not in _STOPWORDS:
                    return _ALIASES.get(t.low, _stem(t.low))
            return None

        for k, low in enumerate(lows):
            if low != "from":
                continue
            a = next_content(k)
            if a is None:
                continue
            for k2 in range(k + 1, min(len(lows), k + 6)):
                if lows[k2] in ("to", "into"):
                    b = next_content(k2)
                    if b is not None:
                        out.add((a, b))
                    break
            for k2 in range(max(0, k - 5), k):
                if lows[k2] in ("to", "into"):
                    b = next_content(k2)
                    if b is not None and b != a:
                        out.add((a, b))
        return _frozen(out)

_T = TypeVar("_T")
_EMPTY: frozenset[Any] = frozenset()
_NO_QUANTITIES = (_EMPTY,) * 7


def _frozen(values: set[_T]) -> frozenset[_T]:
    """``frozenset(values)``; an empty one shared (most of a text's sets are empty, and
    each analysis is cached: every set kept is one more object each full garbage
    collection walks)."""
    return frozenset(values) if values else _EMPTY


def _analyse(text: str) -> _Features:
    return _Builder(_tokenise(_normalise(text))).build()


# Two caches, one per side of a pair. A lookup's question is analysed once and judged
# against all of its candidates; the cached questions (the candidates) are judged again on
# lookup after lookup, so they keep an analysis of their own that a stream of new questions
# cannot push out. Both are bounded (texts are at most MAX_ANALYSED_CHARS long here).


@lru_cache(maxsize=2048)
def _features(text: str) -> _Features:
    """A new question's analysis (the query side of a pair)."""
    return _analyse(text)


@lru_cache(maxsize=16384)
def _entry_features(text: str) -> _Features:
    """A cached question's analysis (the candidate side of a pair). Most answers are stored
    after a miss whose question was judged against candidates, so its analysis as a new
    question is still at hand: taken from that cache (the same text, the same analysis)."""
    return _features(text)
