"""What one text pins down, as compared by the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._flags import _F_STOP, _FLAGS
from ._lexicon_names import _DEMONYMS, _RANKINGS

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
    asks: frozenset[str]  # sentence-initial why/when/where/who
    entities: frozenset[str]
    code: frozenset[str]
    languages: frozenset[str]
    formats: frozenset[str]
    mentions: frozenset[str]  # every format or shape named, asked for or not
    styles: frozenset[str]
    opposites: frozenset[str]
    # The runs of two to six capitalised words ("Natural Language Processing"), from which
    # ``acronyms`` is derived.
    runs: tuple[tuple[str, ...], ...] = ()
    # Derived once here, so that a pair's rules can tell at a glance that they have
    # nothing to compare (two texts without numbers or markers, most pairs): the values a
    # quantity rule compares (equal on both sides: no quantity veto), the direction
    # markers and the copulas among the words, the order words sorted (the same words in
    # another order).
    quantities: tuple[frozenset[str], ...] = ()
    markers: frozenset[str] = frozenset()
    copulas: frozenset[str] = frozenset()
    order_sorted: tuple[str, ...] = ()
    # What only some comparisons read is derived on first use (see the properties below)
    # and kept here: a new question is compared a few times at most, and most comparisons
    # never get that far. (Two threads deriving one at once derive the same value.)
    _initials: str | None = field(default=None, init=False, repr=False, compare=False)
    _acronyms: frozenset[tuple[str, str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _by_prefix: Mapping[str, tuple[str, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _demonym_of: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    _rankings: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    #: ``_rules_qualifiers._groups`` of the words, kept there (on first use) by that rule.
    groups: Mapping[str, tuple[str, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def initials(self) -> str:
        """First letters of the content words, in order ("machine learning": "ml")."""
        if self._initials is None:
            self._initials = "".join(w[0] for w in self.words if not _FLAGS.get(w, 0) & _F_STOP)
        return self._initials

    @property
    def acronyms(self) -> frozenset[tuple[str, str]]:
        """Each word of a capitalised run with the initials of the run, or of any part of
        it that holds the word ("natural" -> "nlp", "nl")."""
        if self._acronyms is None:
            found: set[tuple[str, str]] = set()
            for run in self.runs:
                n = len(run)
                for a in range(n - 1):
                    for b in range(a + 2, n + 1):
                        initials = "".join(w[0] for w in run[a:b])
                        found.update((w, initials) for w in run[a:b])
            self._acronyms = frozenset(found)
        return self._acronyms

    @property
    def by_prefix(self) -> Mapping[str, tuple[str, ...]]:
        """The words by their first three letters (name matching compares within a prefix)."""
        if self._by_prefix is None:
            by: dict[str, tuple[str, ...]] = {}
            for w in self.word_set:
                by[w[:3]] = (*by.get(w[:3], ()), w)
            self._by_prefix = by
        return self._by_prefix

    @property
    def demonym_of(self) -> frozenset[str]:
        """The places or languages the words are demonyms of ("chinese": "china")."""
        if self._demonym_of is None:
            self._demonym_of = frozenset(_DEMONYMS[w] for w in self.word_set if w in _DEMONYMS)
        return self._demonym_of

    @property
    def rankings(self) -> frozenset[str]:
        """The orders a list is asked in ("latest", "top")."""
        if self._rankings is None:
            self._rankings = frozenset(_RANKINGS[w] for w in self.word_set if w in _RANKINGS)
        return self._rankings
