"""Veto rules for what a question is about or asks for: the language, the format or
style of the answer, code identifiers, names."""

from __future__ import annotations

from ._features import _Features
from ._lexicon_names import _OPPOSITE_STYLES
from ._lexicon_words import _STOPWORDS
from ._name_matching import _code_present, _entity_present, _language_present
from ._sets import _fmt

_MAX_SWAPPED = 3  # the longest run of words a name swap replaces ("Niels Henrik Bohr")


def _name_reasons(qf: _Features, cf: _Features, close: bool) -> list[str]:
    # Each test below is skipped when its sets cannot differ (most pairs name nothing):
    # a name, language or identifier the other text holds as such is always present.
    reasons: list[str] = []
    if qf.languages != cf.languages:
        ql = {x for x in qf.languages - cf.languages if not _language_present(x, cf)}
        cl = {x for x in cf.languages - qf.languages if not _language_present(x, qf)}
        if ql or cl:
            reasons.append(f"language:{_fmt(ql)}!={_fmt(cl)}")
    # A shape asked for on one side may be a mere topic word on the other ("as a table" /
    # "which table"): only a shape the other text never mentions differs.
    if qf.formats != cf.formats:
        qfmt = {f for f in qf.formats - cf.formats if f not in cf.mentions}
        cfmt = {f for f in cf.formats - qf.formats if f not in qf.mentions}
        if qfmt or cfmt:
            reasons.append(f"format:{_fmt(qfmt)}!={_fmt(cfmt)}")
    if qf.styles != cf.styles:
        qs, cs = qf.styles - cf.styles, cf.styles - qf.styles
        if any((a, b) in _OPPOSITE_STYLES or (b, a) in _OPPOSITE_STYLES for a in qs for b in cs):
            reasons.append(f"format:{_fmt(qs)}!={_fmt(cs)}")

    # The order a list is asked in: "the latest posts" / "the top posts".
    q_rank, c_rank = qf.rankings, cf.rankings
    if q_rank and c_rank and not q_rank & c_rank:
        reasons.append(f"ranking:{_fmt(q_rank)}!={_fmt(c_rank)}")

    if qf.code and cf.code:
        q_code = {c for c in qf.code if not _code_present(c, cf, qf)}
        c_code = {c for c in cf.code if not _code_present(c, qf, cf)}
        if q_code and c_code:
            reasons.append(f"code_identifier:{_fmt(q_code)}!={_fmt(c_code)}")

    q_ent = {e for e in qf.entities - cf.entities if not _entity_present(e, qf, cf)}
    c_ent = {e for e in cf.entities - qf.entities if not _entity_present(e, cf, qf)}
    if qf.title_case and cf.title_case and not (q_ent or c_ent):
        # Title Case Hides Names: two texts the same but for one word, or a short run of
        # words, each ("The Mayor Of Leeds" / "The Mayor Of Bristol") name two different
        # things. A synonym swapped in title case ("Fix" / "Repair") is vetoed too: the
        # price of not knowing names.
        swap = _span_swapped(qf.words, cf.words)
        if swap is not None:
            q_ent, c_ent = {swap[0]}, {swap[1]}
    # Another name, or a name added to the same words, a restrictive modifier ("work at
    # Siemens" / "work at Siemens in Munich"): the answer is about something else or
    # something narrower.
    if (q_ent and c_ent) or ((q_ent or c_ent) and close):
        reasons.append(f"entity:{_fmt(q_ent)}!={_fmt(c_ent)}")
    return reasons



def _span_swapped(qw: tuple[str, ...], cw: tuple[str, ...]) -> tuple[str, str] | None:
    """The two runs of words that differ, if the texts are the same words but for one run
    of one to three words each, in the same place ("Who Was Albert Einstein" / "Who Was
    Niels Bohr"), each run holding a content word."""
    p = 0
    while p < min(len(qw), len(cw)) and qw[p] == cw[p]:
        p += 1
    s = 0
    while s < min(len(qw), len(cw)) - p and qw[-1 - s] == cw[-1 - s]:
        s += 1
    a, b = qw[p : len(qw) - s], cw[p : len(cw) - s]
    if not (1 <= len(a) <= _MAX_SWAPPED and 1 <= len(b) <= _MAX_SWAPPED):
        return None
    if sorted(a) == sorted(b):
        return None  # the same words reordered: the direction rule's case, not a swap
    for run in (a, b):
        if not all(w.isalpha() for w in run) or all(w in _STOPWORDS for w in run):
            return None
    return " ".join(a), " ".join(b)
