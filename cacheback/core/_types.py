"""Value types that flow through the engine: requests, entries, candidates, outcomes."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..guard import canonical_question

Vector = NDArray[np.float32]


class Tier(StrEnum):
    """Where an answer came from (or why there is none)."""

    EXACT = "exact"  # same scope, same text: answered from the hash, no embedding
    VERBATIM = "verbatim"  # same scope, similar enough and the guard agrees
    SYNTHESIS = "synthesis"  # compiled from cached candidates by a cheap model
    UPSTREAM = "upstream"  # the real provider call
    MISS = "miss"  # engine-only lookup found nothing to serve
    BLOCKED = "blocked"  # the negative cache matched
    BYPASS = "bypass"  # not cacheable, or the cache was skipped on purpose

    @property
    def is_hit(self) -> bool:
        return self in (Tier.EXACT, Tier.VERBATIM)


def fold_whitespace(text: str) -> str:
    """The text as the exact tier compares it: the same text up to spacing.

    Runs of spaces and tabs (any whitespace but a line break) inside a line count as one
    space, the ends of the text and of each line are trimmed, and ``\\r\\n``/``\\r`` are
    ``\\n``. Line breaks and the indentation that starts each later line are kept: in code
    they are meaning ("if x:\\n    return 1" is not "if x:\\nreturn 1").
    """
    if _folds_to_stripped(text):
        return text.strip()
    if "\n" not in text and "\r" not in text:
        return _fold_line(text)  # one line: the common case, and the old folding
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    out = [_fold_line(lines[0])]  # its indentation went with the trimmed start
    since_yield = 0
    for line in lines[1:]:
        body = line.lstrip(" \t")
        folded = _fold_line(body)
        out.append(line[: len(line) - len(body)] + folded if folded else "")
        since_yield += len(line)
        if since_yield > _FOLD_SLICE:
            since_yield = 0
            _let_others_run()
    return "\n".join(out)


# ASCII whitespace as str.split() sees it, but the plain space.
_ASCII_BREAKS = ("\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def _folds_to_stripped(text: str) -> bool:
    """Whether folding only trims the ends: an ASCII text whose only whitespace is single
    spaces. A few scans at memory speed, so prose of any size is keyed without a split."""
    return text.isascii() and "  " not in text and not any(ch in text for ch in _ASCII_BREAKS)


# A huge text is folded in slices of about this many characters, cut at a space or tab:
# one C call over megabytes would hold the GIL, and so the event loop, however long it takes.
_FOLD_SLICE = 1 << 16


def _let_others_run() -> None:
    """Hand the GIL over between slices of a huge text (folded on a worker thread): left to
    the interpreter's 5 ms switch interval, an event loop waiting for it behind one or more
    such threads was held for 50-100 ms at a time on a 2-core machine."""
    time.sleep(0)


def _fold_line(line: str) -> str:
    """``" ".join(line.split())``, a slice at a time (a cut at whitespace splits no word)."""
    if len(line) <= _FOLD_SLICE:
        return " ".join(line.split())
    parts: list[str] = []
    start, n = 0, len(line)
    while start < n:
        cuts = [
            k for k in (line.find(" ", start + _FOLD_SLICE), line.find("\t", start + _FOLD_SLICE)) if k >= 0
        ]
        end = min(cuts) if cuts else n
        folded = " ".join(line[start:end].split())
        if folded:
            parts.append(folded)
        start = end
        _let_others_run()
    return " ".join(parts)


def text_hash(text: str) -> str:
    """Hash of the match text after :func:`fold_whitespace` (the exact-hit key).

    Lone surrogates (JSON ``"\\ud800"`` escapes decode to them) are hashed as they are
    ("surrogatepass"), so two texts that differ only in which one they carry never share
    a key. Texts without them hash to the same bytes as plain UTF-8.

    The hash is persisted (the store's ``query_hash`` column). Single-line texts hash as
    they always did; a multi-line text stored before line breaks and indentation were
    kept (when all whitespace was folded) has a different key now, so it no longer hits
    exactly, though it still matches semantically, and its next upstream answer is
    stored under the new key.
    """
    data = fold_whitespace(text).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` has a surrogate code point: no UTF-8 form, so SQLite and the
    tokenizer reject it (a JSON ``"\\ud800"`` escape decodes to one)."""
    if text.isascii():  # memory speed: the common case never runs the pattern
        return False
    try:
        text.encode("utf-8")  # C speed; fails exactly on a surrogate code point
    except UnicodeEncodeError:
        return True
    return False


def clean_text(text: str) -> str:
    """The text with lone surrogates replaced by U+FFFD, for the embedder (the tokenizer
    rejects them) and for storage (SQLite cannot encode them); pairs of surrogates become
    the character they encode.

    Only the exact-hit key (:func:`text_hash`) sees the original: texts that differ only
    in their lone surrogates embed identically, so the semantic tier may treat them as
    the same question. That is accepted: such texts are near-identical by construction,
    and the hit guard still compares everything else.
    """
    if not has_lone_surrogate(text):  # almost always: no copy
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def match_text(text: str) -> str:
    """The text that is embedded for a query or an entry: :func:`clean_text`, with a
    request template reduced to its canonical form ("Tell me about X" is embedded as
    "What is X?", see ``cacheback.guard.canonical_question``). The exact-hit key, the
    stored text and the guard keep the original."""
    return canonical_question(clean_text(text))


def scope_id(namespace: str, scope: str) -> str:
    """Stable short id for a namespace plus a provider-specific scope key."""
    raw = f"{namespace}\x00{scope}".encode("utf-8", "surrogatepass")  # never raises
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored question and its answer, as read back from a store."""

    id: int
    scope: str
    query: str
    answer: str
    payload: bytes | None
    created_at: float
    expires_at: float
    last_access: float
    hits: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    # The stored query vector, when the read had it at hand (``find_exact``): an exact
    # repeat checks the blocklist with it instead of embedding the text again.
    vector: Vector | None = field(default=None, compare=False, repr=False)
    # The entry's own verbatim threshold, learned from feedback (core/_feedback.py); None:
    # the global similarity_threshold alone.
    hit_threshold: float | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An answer to be written (the persister batches these)."""

    scope: str
    query: str
    query_hash: str
    answer: str
    vector: Vector | None
    created_at: float
    expires_at: float
    payload: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    """A blocklisted query pattern."""

    id: int
    query: str
    reason: str
    category: str
    severity: int
    false_positives: int
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NegativeMatch:
    entry_id: int
    query: str
    reason: str
    category: str
    severity: int
    similarity: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "entry_id": self.entry_id,
            "category": self.category,
            "severity": self.severity,
            "similarity": round(self.similarity, 4),
            "query": self.query,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """A cached entry near the query, with its similarity and the guard's verdict."""

    entry: CacheEntry
    similarity: float
    guard_reasons: tuple[str, ...] = ()

    @property
    def entry_id(self) -> int:
        return self.entry.id


@dataclass(slots=True)
class LookupRequest:
    """What the engine needs to look a question up.

    ``scope`` is the provider-specific context key (model, system prompt, earlier
    turns, output-changing parameters); ``query`` is the text matched semantically
    (the last user message).
    """

    query: str
    scope: str = ""
    namespace: str | None = None
    cacheable: bool = True  # False: skip the cache entirely (bypass)
    semantic: bool = True  # False: exact-hash matching only
    read: bool = True  # False: do not serve from cache (still stores unless store=False)
    store: bool = True  # False: read but never write
    ttl: float | None = None
    check_negative: bool = True
    want_synthesis: bool = False  # the caller can run a synthesis tier
    bypass_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The engine's answer to a lookup."""

    tier: Tier
    similarity: float | None = None
    entry: CacheEntry | None = None
    candidates: tuple[Candidate, ...] = ()
    negative: NegativeMatch | None = None
    guard_reasons: tuple[str, ...] = ()
    scope: str = ""
    query_hash: str = ""
    vector: Vector | None = None
    latency_ms: float = 0.0
    detail: str | None = None

    @property
    def hit(self) -> bool:
        return self.tier.is_hit

    @property
    def entry_id(self) -> int | None:
        return self.entry.id if self.entry is not None else None

    @property
    def answer(self) -> str | None:
        return self.entry.answer if self.entry is not None and self.hit else None
