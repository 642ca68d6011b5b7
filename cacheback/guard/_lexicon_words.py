"""Function words the guard reads: stopwords, negation cues, opposite pairs, the
question and order words whose position carries meaning, and the cues of a passive verb.
The lists themselves are in ``data/`` (see :mod:`._wordlists`)."""

from __future__ import annotations

from ._wordlists import mapping, pairs, words

_STOPWORDS = words("stopwords")
_NEGATIONS = words("negations")

_OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = pairs("opposites")
_OPPOSITE_WORDS_SET: frozenset[str] = frozenset(w for pair in _OPPOSITE_PAIRS for w in pair)
_OPPOSITE_OF: dict[str, frozenset[str]] = {}
for _a, _b in _OPPOSITE_PAIRS:
    _OPPOSITE_OF[_a] = _OPPOSITE_OF.get(_a, frozenset()) | {_b}
    _OPPOSITE_OF[_b] = _OPPOSITE_OF.get(_b, frozenset()) | {_a}

_DIRECTION_MARKERS = words("direction_markers")
# Words (and commas) across which order means nothing; marked in _Features.order.
_SYMMETRIC = words("symmetric")
_SYMMETRIC_MARK = "|"
_ROLE_PREPOSITIONS = words("role_prepositions")

_WH_WORDS: dict[str, frozenset[str]] = {
    k: frozenset(v.split()) for k, v in mapping("question_words").items()
}
_WH_LEADS = words("question_leads")
# "What year" / "in which year" ask what "when" asks: the nouns of a question word's list,
# after an opening "what"/"which" (and a preposition), name that question word.
_WH_OF_NOUN: dict[str, str] = {noun: wh for wh, nouns in _WH_WORDS.items() for noun in nouns}
_WH_DETERMINERS = frozenset({"what", "which"})
_WH_PHRASE_LEADS = words("question_phrase_leads")
# Groups of people a question may be about, after the prepositions that introduce them.
_GROUP_NOUNS = words("group_nouns")
_GROUP_PREPOSITIONS = words("group_prepositions")
_AUXILIARIES = words("auxiliaries")
_BE = words("passive_auxiliaries")
_COPULAS = words("copulas")
_IRREGULAR_PARTICIPLES = words("irregular_participles")


def _participle(word: str) -> bool:
    return word.endswith(("ed", "en")) or word in _IRREGULAR_PARTICIPLES
