"""Per-entry thresholds learned from feedback: pure functions, no I/O, no event loop.

Every entry may carry its own verbatim threshold (``CacheEntry.hit_threshold``, on the
cosine scale; None: the global ``similarity_threshold`` alone). A report that an entry
served a wrong answer at similarity ``s`` raises the entry's threshold above ``s`` by a
margin, so the same question and its near paraphrases (up to ``margin`` more similar)
are not served that answer again; a confirmed correct hit lowers it back by a small step,
never below the global threshold (the entry then carries None again).

The entry's threshold is a floor added to the global one: a candidate must pass both
(``passes_entry_threshold`` here, and the verbatim rule at the global threshold), so a
report never makes an entry easier to hit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

#: A threshold at or above this blocks every paraphrase hit (a cosine is at most 1.0):
#: the entry is then served only for its own text (the exact tier).
NO_PARAPHRASE = 1.01
#: The guard reason a candidate gets when it fails its entry's own threshold only.
FEEDBACK_REASON = "feedback"


class Verdict(StrEnum):
    """What a piece of feedback says about a hit."""

    WRONG = "wrong"
    CORRECT = "correct"


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """How far a report moves an entry's threshold (see the module docstring)."""

    margin: float = 0.02  # a wrong hit at s: the entry's threshold becomes at least s + margin
    relax_step: float = 0.002  # a confirmed correct hit: the threshold falls by this much

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 0.2:
            raise ValueError("the feedback margin must be in [0, 0.2]")
        if not 0.0 <= self.relax_step <= 0.1:
            raise ValueError("the feedback relax step must be in [0, 0.1]")


def passes_entry_threshold(similarity: float, entry_threshold: float | None) -> bool:
    """Whether a candidate at cosine ``similarity`` passes its entry's own threshold
    (None: the entry has none, every candidate passes it)."""
    return entry_threshold is None or similarity >= entry_threshold


def effective_threshold(global_threshold: float, entry_threshold: float | None) -> float:
    """The similarity a candidate of this entry needs at least (both thresholds apply)."""
    return global_threshold if entry_threshold is None else max(global_threshold, entry_threshold)


def after_feedback(
    entry_threshold: float | None,
    verdict: Verdict,
    *,
    global_threshold: float,
    similarity: float | None,
    policy: FeedbackPolicy = FeedbackPolicy(),
) -> float | None:
    """The entry's new threshold after one verdict on a hit it served (None: none of its own).

    - wrong, at a known ``similarity``: at least ``similarity + margin`` (capped at
      :data:`NO_PARAPHRASE`), never lower than before;
    - wrong, similarity unknown: :data:`NO_PARAPHRASE` (no paraphrase hit at all, since
      any similarity could have been the wrong one);
    - correct: ``relax_step`` lower, never below ``global_threshold`` (reaching it clears
      the entry's own threshold); an entry without one stays without.
    """
    current = effective_threshold(global_threshold, entry_threshold)
    if verdict is Verdict.WRONG:
        wanted = NO_PARAPHRASE if similarity is None else min(NO_PARAPHRASE, similarity + policy.margin)
        return round(max(current, wanted), 6)
    if entry_threshold is None:
        return None
    lowered = round(current - policy.relax_step, 6)
    return None if lowered <= global_threshold else lowered


@dataclass(frozen=True, slots=True)
class Served:
    """The latest hit this process served from one entry: its tier and similarity."""

    tier: str
    similarity: float | None


class ServedHits:
    """A bounded memory of the latest hit served per entry, so a report that names only the
    entry can tell a wrong paraphrase hit (raise the entry's threshold above the similarity
    it was served at) from a wrong exact hit (the answer itself is wrong). Under concurrent
    traffic the latest hit may be another caller's: a report that gives the similarity of
    its own hit does not depend on this."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        # Plain (tier, similarity) tuples: the garbage collector stops tracking a tuple of
        # atoms, where each of 10k Served objects would be walked by every full collection.
        self._items: OrderedDict[int, tuple[str, float | None]] = OrderedDict()

    def record(self, entry_id: int, tier: str, similarity: float | None) -> None:
        self._items.pop(entry_id, None)
        self._items[entry_id] = (tier, similarity)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, entry_id: int) -> Served | None:
        item = self._items.get(entry_id)
        return None if item is None else Served(*item)

    def forget(self, entry_id: int) -> None:
        """After a report: later hits start a new record."""
        self._items.pop(entry_id, None)


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What one verdict did to an entry."""

    entry_id: int
    found: bool  # the entry existed
    removed: bool = False  # it was deleted (a wrong exact hit, or no similarity known)
    hit_threshold: float | None = None  # its own threshold now (None: the global one alone)


# -- sampled verification: the cheap model judges a served hit --------------------------------

#: Characters of the cached answer shown to the judge (an answer is cut there).
VERIFY_ANSWER_CHARS = 4000


def should_verify(rate: float, draw: float) -> bool:
    """Whether a hit is checked, given ``feedback_verify_rate`` and a uniform draw in [0, 1)."""
    return draw < rate


def verify_messages(question: str, answer: str) -> list[dict[str, str]]:
    """The judge's prompt: does the cached answer answer this question (yes or no)?"""
    shown = answer if len(answer) <= VERIFY_ANSWER_CHARS else answer[:VERIFY_ANSWER_CHARS] + " [...]"
    return [
        {
            "role": "system",
            "content": "You check a cache. Reply with one word: yes if the answer given answers "
            "the question asked (the same question, not a similar or a related one), otherwise no.",
        },
        {"role": "user", "content": f"Question:\n{question}\n\nAnswer given:\n{shown}\n\nyes or no?"},
    ]


def parse_verdict(reply: str) -> Verdict | None:
    """The judge's verdict from its reply ("Yes.", "no"), or None when it is neither."""
    words = reply.strip().lower().split()
    first = words[0].strip(".,!:;\"'*") if words else ""
    return Verdict.CORRECT if first == "yes" else Verdict.WRONG if first == "no" else None
