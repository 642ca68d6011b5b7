"""Which columns of a labelled pair file hold the two texts and the label.

Public paraphrase and duplicate data sets name them differently (Quora's
``question1,question2,is_duplicate``, GLUE/PAWS's ``sentence1,sentence2,label``, ...): the
common layouts are recognised from the header, any other is named with ``--columns``.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Recognised header layouts: (first text, second text, label), tried in this order.
LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("question1", "question2", "is_duplicate"),
    ("sentence1", "sentence2", "label"),
    ("text1", "text2", "label"),
    ("query1", "query2", "duplicate"),
    ("text_a", "text_b", "label"),
    ("sentence_a", "sentence_b", "label"),
    ("s1", "s2", "label"),
    ("q1", "q2", "label"),
)
_FIRST_SECOND = tuple((a, b) for a, b, _ in LAYOUTS)
_LABELS = ("is_duplicate", "label", "duplicate", "is_paraphrase", "paraphrase", "is_similar")
_TRUE = frozenset({"1", "true", "yes", "y", "duplicate", "paraphrase"})
_FALSE = frozenset({"0", "false", "no", "n", "not_duplicate", "not_paraphrase"})


class ColumnError(ValueError):
    """The file's header does not say where the texts and the label are."""


def expected() -> str:
    layouts = " | ".join(",".join(layout) for layout in LAYOUTS)
    return f"expected a header like {layouts} (or give --columns FIRST,SECOND,LABEL)"


def parse_columns(option: str) -> tuple[str, str, str]:
    """``--columns A,B,LABEL`` → its three names."""
    names = tuple(part.strip() for part in option.split(","))
    if len(names) != 3 or not all(names):
        raise ColumnError(f"--columns takes three comma-separated names (FIRST,SECOND,LABEL), not {option!r}")
    return names[0], names[1], names[2]


def pair_columns(header: Sequence[str], given: tuple[str, str, str] | None = None) -> tuple[str, str, str]:
    """The (first, second, label) column names of ``header``; matching ignores case and
    surrounding spaces, and returns the names as the header spells them."""
    by_lower = {name.strip().lower(): name for name in header}
    shown = ", ".join(header) if header else "(no header)"
    if given is not None:
        missing = [name for name in given if name.strip().lower() not in by_lower]
        if missing:
            raise ColumnError(f"no column {', '.join(missing)} in the header ({shown})")
        return by_lower[given[0].strip().lower()], by_lower[given[1].strip().lower()], by_lower[
            given[2].strip().lower()
        ]
    for first, second in _FIRST_SECOND:
        if first in by_lower and second in by_lower:
            for label in _LABELS:
                if label in by_lower:
                    return by_lower[first], by_lower[second], by_lower[label]
    raise ColumnError(f"the header has columns {shown}; {expected()}")


def parse_label(raw: str | None) -> int:
    """A row's label as 0/1 (1: the two texts ask the same thing)."""
    text = (raw or "").strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if number in (0.0, 1.0):
        return int(number)
    raise ColumnError(f"a label must be 0 or 1 (or true/false, yes/no), not {raw!r}")
