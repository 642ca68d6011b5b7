"""One canonical form for request templates that ask the same question.

"Tell me about Python", "Can you explain Python?" and "What is Python?" ask one thing,
but the sentence embedding sees three different openings (cosine 0.89 for the first
and last). :func:`canonical_question` rewrites such texts to one form, for the text
that is embedded only: the exact-hit key and the guard keep the original text.

The templates are the lines of ``data/request_templates.txt``. A text that opens with
none of them is returned unchanged, and so is a courtesy ("can you", "please") that no
template follows: "can you swim?" asks about the assistant, not for an explanation.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ._wordlists import mapping

_KINDS = frozenset({"polite", "topic", "clause", "wh"})


def _load() -> tuple[dict[str, tuple[tuple[str, str], ...]], frozenset[str]]:
    """Template phrases by their first word, longest first; and the clause words."""
    table = mapping("request_templates")
    bad = {k for k in table.values() if k not in _KINDS}
    if bad:
        raise ValueError(f"guard word list request_templates.txt: unknown kinds {sorted(bad)}")
    by_first: dict[str, list[tuple[str, str]]] = {}
    for phrase, kind in sorted(table.items(), key=lambda pk: -len(pk[0])):
        if kind != "wh":
            by_first.setdefault(phrase.split(" ", 1)[0], []).append((phrase, kind))
    leads = {first: tuple(found) for first, found in by_first.items()}
    return leads, frozenset(p for p, k in table.items() if k == "wh")


_LEADS, _WH = _load()
#: Longer texts are returned unchanged: templates are short questions, and the work per
#: text stays bounded however long a prompt is.
MAX_TEMPLATE_CHARS = 300
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s?.!,;:]+$")
_TRAILING_PLEASE = re.compile(r"[\s,]+please$", re.IGNORECASE)


def _lead(text: str) -> tuple[str, str] | None:
    """The longest template phrase ``text`` opens with, and its kind."""
    low = text.lower()
    first = low.split(" ", 1)[0].rstrip(",:")
    for phrase, kind in _LEADS.get(first, ()):
        if low.startswith(phrase) and (len(low) == len(phrase) or not low[len(phrase)].isalnum()):
            return phrase, kind
    return None


def _rest(text: str, phrase: str) -> str:
    return text[len(phrase):].lstrip(" ,:")


def canonical_question(text: str) -> str:
    """``text`` with a request template reduced to one form (see the module docstring):
    a topic becomes "What is X?", a clause "Why X?" (its own opening word); any other
    text comes back unchanged, as does one longer than :data:`MAX_TEMPLATE_CHARS`."""
    if len(text) > MAX_TEMPLATE_CHARS:
        return text  # before the cache: never hash a long prompt, never keep one
    return _canonical_short(text)


@lru_cache(maxsize=4096)
def _canonical_short(text: str) -> str:
    opening = text.split(None, 1)
    if not opening or opening[0].lower().replace("\u2019", "'").rstrip(",:") not in _LEADS:
        return text  # the common case: no template opens the text
    flat = _SPACE.sub(" ", text.replace("\u2019", "'")).strip()
    flat = _TRAILING.sub("", _TRAILING_PLEASE.sub("", _TRAILING.sub("", flat)))
    found = _lead(flat)
    while found is not None and found[1] == "polite":  # courtesies before a template
        flat = _rest(flat, found[0])
        found = _lead(flat)
    if found is None:
        return text
    phrase, kind = found
    rest = _rest(flat, phrase)
    if not rest:
        return text
    first = rest.split(" ", 1)[0].lower()
    if first in _WH:
        return f"{rest[0].upper()}{rest[1:]}?"
    if kind == "clause":
        return text
    return f"What is {rest}?"
