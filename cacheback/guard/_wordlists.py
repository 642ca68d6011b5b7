"""Reads the guard's hand-written word lists from ``data/*.txt`` (shipped as package data).

Each file holds one entry a line: a word (``words``), ``key = value`` (``mapping``) or
``a / b`` (``pairs``). Blank lines and lines starting with ``#`` are skipped, as is a
`` #`` comment at the end of a line (``c#`` is a word: only a ``#`` after a space starts
a comment). The lexicon modules read every list once, when the guard is imported.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

_PACKAGE = __package__ or "cacheback.guard"


def _data() -> Traversable:
    return resources.files(_PACKAGE).joinpath("data")


def entries(name: str) -> list[str]:
    """The non-comment lines of ``data/<name>.txt``, stripped."""
    text = _data().joinpath(f"{name}.txt").read_text(encoding="utf-8")
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def words(name: str) -> frozenset[str]:
    return frozenset(entries(name))


def _split(line: str, sep: str, name: str) -> tuple[str, str]:
    left, found, right = line.partition(sep)
    if not found or not left.strip() or not right.strip():
        raise ValueError(f"guard word list {name}.txt: expected 'a{sep}b', got {line!r}")
    return left.strip(), right.strip()


def mapping(name: str) -> dict[str, str]:
    """``key = value`` lines, in file order."""
    return dict(_split(line, " = ", name) for line in entries(name))


def pairs(name: str) -> tuple[tuple[str, str], ...]:
    """``a / b`` lines, in file order."""
    return tuple(_split(line, " / ", name) for line in entries(name))
