"""What one text pins down, as compared by the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A negation with no content word close after it (see ``_Features.neg_heads``).
_UNSCOPED = "*"


@dataclass(slots=True)
class _Features:
    """What one text pins down. Built once per text (cached) and never changed after:
    not frozen only because a frozen dataclass's ``__init__`` sets its 40-odd fields one
    ``object.__setattr__`` at a time, a tenth of the cost of analysing a question."""

    words: tuple[str, ...]  # lower-case word tokens, in order
    title_case: bool  # most words capitalised: capitals say nothing of names then
    word_set: frozenset[str]
    order: tuple[str, ...]  # content words, code, direction words and "|" (and/or/comma)
    initials: str  # first letters of the content words, in order ("machine learning": "ml")
    stems: frozenset[str]
    content: frozenset[str]  # content stems (stopwords dropped)
    numbers: frozenset[str]
    spelled: frozenset[str]
    versions: frozenset[str]
    ordinals: frozenset[str]
    written_ordinals: frozenset[str]  # the ordinals written in digits ("25th")
    dates: frozenset[str]
    times: frozenset[str]
    units: frozenset[str]
    unit_targets: frozenset[str]
    currencies: frozenset[str]
    currency_targets: frozenset[str]
    conversions: frozenset[tuple[str, str]]  # (from, to) of units or currencies
    routes: frozenset[tuple[str, str]]  # "from A to B"
    negated: bool
    # What each negation applies to: the first content word after the cue ("without
    # food": "food"), or "*" when nothing follows it closely.
    neg_heads: frozenset[str]
    passive: frozenset[str]  # stems used as a passive participle ("is mentioned")
    # A capitalised run's words and the run's initials ("natural" -> "nlp").
    acronyms: frozenset[tuple[str, str]]
    asks: frozenset[str]  # sentence-initial why/when/where/who
    entities: frozenset[str]
    code: frozenset[str]
    languages: frozenset[str]
    formats: frozenset[str]
    mentions: frozenset[str]  # every format or shape named, asked for or not
    styles: frozenset[str]
    opposites: frozenset[str]
    # Derived once here, so comparing two texts does not rebuild them for every pair: the
    # words by their first three letters (name matching compares within a prefix only) and
    # the places or languages the words are demonyms of ("chinese": "china").
    by_prefix: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    demonym_of: frozenset[str] = frozenset()
    # Derived once here too, so that a pair's rules can tell at a glance that they have
    # nothing to compare (two texts without numbers, markers or groups, most pairs):
    # the values a quantity rule compares (equal on both sides: no quantity veto) ...
    quantities: tuple[frozenset[str], ...] = ()
    # ... the order a list is asked in ("latest", "top"), the direction markers and the
    # copulas among the words, the order words sorted (the same words in another order),
    # and each group of people with the words qualifying it (``_rules_qualifiers._groups``).
    rankings: frozenset[str] = frozenset()
    markers: frozenset[str] = frozenset()
    copulas: frozenset[str] = frozenset()
    order_sorted: tuple[str, ...] = ()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
