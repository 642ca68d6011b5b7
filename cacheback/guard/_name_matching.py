"""Whether a name, language or code identifier from one text also appears in the
other, in any case, spelling or form."""

from __future__ import annotations

from ._features import _Features
from ._lexicon_names import _DEMONYMS
from ._text import _stem

_NAME_SUFFIXES = ("n", "an", "ian", "ese", "ish", "ans", "ns", "s", "es", "i", "ic")
_DEMONYM_TARGETS = frozenset(_DEMONYMS.values())


def _close_spelling(a: str, b: str) -> bool:
    """One edit apart ("Tchaikovsky"/"Tchaikowsky"), for names long enough to be unambiguous."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    for k in range(len(long_)):
        if long_[:k] + long_[k + 1 :] == short:
            return True
    return False


def _present(name: str, feats: _Features) -> bool:
    """Whether a name from one text also appears in the other, in any case or form."""
    if name in feats.entities or name in feats.word_set or name in feats.languages:
        return True
    if _stem(name) in feats.stems or _DEMONYMS.get(name) in feats.entities:
        return True
    if " " in name:
        return all(part in feats.word_set for part in name.split())
    if 2 <= len(name) <= 5 and name.isalpha() and name in feats.initials:
        return True  # "ML" / "machine learning"
    for other in feats.by_prefix.get(name[:3], ()):  # the words with the same first letters
        if other.startswith(name) and other[len(name) :] in _NAME_SUFFIXES:
            return True
        if name.startswith(other) and len(other) >= 4 and name[len(other) :] in _NAME_SUFFIXES:
            return True
        if _close_spelling(name, other):
            return True
    return False


def _entity_present(name: str, own: _Features, other: _Features) -> bool:
    """``_present``, or a word of a capitalised run whose initials the other text names."""
    if _present(name, other):
        return True
    return any(
        w == name and (a in other.entities or a in other.word_set) for w, a in own.acronyms
    )


def _language_present(lang: str, feats: _Features) -> bool:
    if lang in feats.languages or _present(lang, feats):
        return True
    # "Chinese" matches "China" and the other way round.
    return lang in feats.demonym_of or (
        lang in _DEMONYM_TARGETS and lang in feats.word_set
    )


def _code_present(ident: str, feats: _Features, own: _Features) -> bool:
    if ident in feats.code:
        return True
    # "Open Street.js" / "OpenStreet.js": the word before it, written together.
    if any(o.endswith(ident) and o[: len(o) - len(ident)] in own.word_set for o in feats.code):
        return True
    # "read_csv" and "pandas.read_csv" name the same function.
    if any(o.endswith("." + ident) or ident.endswith("." + o) for o in feats.code):
        return True
    # A bare word in one text matches the same word in backticks in the other.
    return ident.isidentifier() and ident in feats.word_set
