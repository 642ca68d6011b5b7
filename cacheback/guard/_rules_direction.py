"""Veto rules for what flips a question's meaning without changing its words much:
negation, swapped order, another question word, an opposite word."""

from __future__ import annotations

from ._features import _UNSCOPED, _Features
from ._lexicon_words import _OPPOSITE_OF, _WH_WORDS
from ._sets import _fmt
from ._word_order import _inverted


def _flips(qf: _Features, cf: _Features) -> list[str]:
    """Opposite words traded between the texts ("best" / "worst"), as "a!=b"."""
    if qf.opposites == cf.opposites:
        return []
    q_opp, c_opp = qf.opposites - cf.opposites, cf.opposites - qf.opposites
    return sorted(f"{a}!={b}" for a in q_opp for b in c_opp if b in _OPPOSITE_OF[a])


def _direction_reasons(
    qf: _Features, cf: _Features, close: bool, flips: list[str], swapped: bool
) -> list[str]:
    reasons: list[str] = []
    # Negation and swapped order: a near-miss of this kind differs only by a cue word or by order,
    # so both need the same words; heavy rewrites move negation and order around freely.
    # The negated text must negate something the other one says ("with food" / "without
    # food"); a negation of a word the other never uses is a rewording, the same claim
    # said through its contrary ("removes the need for a stove" / "you never have to
    # light a stove").
    if qf.negated != cf.negated and close:
        neg, other = (qf, cf) if qf.negated else (cf, qf)
        if any(h == _UNSCOPED or h in other.stems for h in neg.neg_heads):
            reasons.append("negation")
    if swapped and not flips:
        reasons.append("direction")
    if close and qf.asks != cf.asks:
        q_wh = {w for w in qf.asks - cf.asks if w not in cf.word_set
                and not _WH_WORDS[w] & cf.word_set}
        c_wh = {w for w in cf.asks - qf.asks if w not in qf.word_set
                and not _WH_WORDS[w] & qf.word_set}
        if q_wh or c_wh:
            reasons.append(f"question:{_fmt(q_wh)}!={_fmt(c_wh)}")
    return reasons


def _opposite_reasons(qf: _Features, cf: _Features, flips: list[str], swapped: bool) -> list[str]:
    # "best" / "worst" flips the question, unless a negation or a swap flips it back ("not
    # the same" / "different", "A more than B" / "B less than A").
    if flips and not swapped and qf.negated == cf.negated and not _inverted(qf.order, cf.order):
        return [f"opposite:{flips[0]}"]
    return []
