"""Veto rules for the values a question pins down: numbers, versions, ordinals, dates,
times, units and currencies."""

from __future__ import annotations

from ._features import _Features
from ._lexicon_quantities import _DURATIONS
from ._sets import _fmt

# Relative dates that move away from "now": one-sided, they still change the question.
_MARKED_DATES = frozenset({"tomorrow", "yesterday", "tonight"})


def _quantity_reasons(qf: _Features, cf: _Features) -> list[str]:
    if qf.quantities == cf.quantities:
        return []  # the same values on both sides: every set compared below is empty
    reasons: list[str] = []
    # Numbers: a different one, or a written value on one side only ("in 2 days" / "in a
    # few days"); a spelled-out count in prose ("two steps") must be contradicted. A number
    # on one side may be an ordinal on the other ("world war 2" / "2nd world war").
    q_all, c_all = qf.numbers | qf.spelled, cf.numbers | cf.spelled
    qn = q_all - c_all - cf.ordinals
    cn = c_all - q_all - qf.ordinals
    if (qn and cn) or (qn & qf.numbers) or (cn & cf.numbers):
        reasons.append(f"number:{_fmt(qn)}!={_fmt(cn)}")
    qv, cv = qf.versions - cf.versions, cf.versions - qf.versions
    if qv or cv:
        reasons.append(f"version:{_fmt(qv)}!={_fmt(cv)}")
    # Ordinals: a different one, or one written in digits on one side only ("an
    # anniversary" / "a 25th anniversary": one of them, not any); a spelled one alone
    # ("the first step") is often a figure of speech.
    qo = qf.ordinals - cf.ordinals - cf.numbers
    co = cf.ordinals - qf.ordinals - qf.numbers
    if (qo and co) or (qo & qf.written_ordinals) or (co & cf.written_ordinals):
        reasons.append(f"ordinal:{_fmt(qo)}!={_fmt(co)}")

    # Dates: a different one, or a one-sided move away from now ("tomorrow").
    qd, cd = qf.dates - cf.dates, cf.dates - qf.dates
    if (qd and cd) or any(d in _MARKED_DATES or d.startswith(("next-", "last-"))
                          for d in qd | cd):
        reasons.append(f"date:{_fmt(qd)}!={_fmt(cd)}")
    qt, ct = qf.times - cf.times, cf.times - qf.times
    if (qt and ct) or any(":" in t for t in qt | ct):
        reasons.append(f"time:{_fmt(qt)}!={_fmt(ct)}")

    # Units and currencies: a different one, or one asked for on one side only ("in km").
    qu, cu = qf.units - cf.units, cf.units - qf.units
    # A duration asked for on one side only is a time frame ("in a month"), not a unit.
    if (qu and cu) or (qu & qf.unit_targets - _DURATIONS) or (
        cu & cf.unit_targets - _DURATIONS
    ):
        reasons.append(f"unit:{_fmt(qu)}!={_fmt(cu)}")
    qc, cc = qf.currencies - cf.currencies, cf.currencies - qf.currencies
    if (qc and cc) or (qc & qf.currency_targets) or (cc & cf.currency_targets):
        reasons.append(f"currency:{_fmt(qc)}!={_fmt(cc)}")
    return reasons
