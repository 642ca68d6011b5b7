"""Veto rule for a narrowed group: one text qualifies the group of people it asks about
("used by the community" / "used by the design community", "popular among developers" /
"popular among game developers"), the other does not."""

from __future__ import annotations

from collections.abc import Mapping

from ._features import _Features
from ._lexicon_words import _GROUP_NOUNS, _GROUP_PREPOSITIONS, _STOPWORDS

_DETERMINERS = frozenset({"the", "a", "an", "most", "many", "some", "all"})
# Plural agent nouns name groups of people too ("writers", "editors", "artists", "musicians").
_AGENT_PLURALS = ("ers", "ors", "ists", "ians")


def _is_group(word: str) -> bool:
    return word in _GROUP_NOUNS or (len(word) > 5 and word.endswith(_AGENT_PLURALS))


def _groups(words_: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each group noun after a group preposition, with the content words before it in
    that phrase ("by the design community": {"community": ("design",)})."""
    out: dict[str, tuple[str, ...]] = {}
    for i, w in enumerate(words_):
        if w not in _GROUP_PREPOSITIONS:
            continue
        j = i + 1
        while j < len(words_) and words_[j] in _DETERMINERS:
            j += 1
        start = j
        while j < len(words_) and j - start < 3 and not _is_group(words_[j]):
            if words_[j] in _STOPWORDS:
                break
            j += 1
        if j < len(words_) and _is_group(words_[j]):
            out[words_[j]] = words_[start:j]
    return out


def _groups_of(f: _Features) -> Mapping[str, tuple[str, ...]]:
    """``_groups`` of a text's words, kept with its analysis on first use."""
    groups = f.groups
    if groups is None:
        groups = f.groups = _groups(f.words)
    return groups


def _qualifier_reasons(qf: _Features, cf: _Features, close: bool) -> list[str]:
    if not close:
        return []
    q_groups = _groups_of(qf)
    if not q_groups:
        return []
    c_groups = _groups_of(cf)
    if not c_groups:
        return []
    for noun in q_groups.keys() & c_groups.keys():
        q_extra = [w for w in q_groups[noun] if w not in cf.word_set]
        c_extra = [w for w in c_groups[noun] if w not in qf.word_set]
        if bool(q_extra) != bool(c_extra):
            return [f"qualifier:{'+'.join(q_extra) or '-'}!={'+'.join(c_extra) or '-'}"]
    return []
