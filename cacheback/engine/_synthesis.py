"""Synthesis prompt and reply rules: pure functions over candidates."""

from __future__ import annotations

from collections.abc import Sequence

from ._types import Candidate

DECLINE_MARKER = "CACHEBACK_NO_ANSWER"

_SYSTEM = (
    "You answer a user's question using only the reference answers given below, which "
    "were written for related questions. Write a complete, direct answer to the NEW "
    "question in the style of the references. Do not mention the references or that you "
    "were given any. If the references do not contain what is needed to answer the new "
    f"question correctly, reply with exactly {DECLINE_MARKER} and nothing else."
)


def build_synthesis_messages(query: str, candidates: Sequence[Candidate], top_k: int) -> list[dict[str, str]]:
    """Grounded chat messages: the top-k cached Q&A pairs of the caller's scope."""
    refs = []
    for i, cand in enumerate(candidates[:top_k], start=1):
        refs.append(f"[{i}] Question: {cand.entry.query}\n[{i}] Answer: {cand.entry.answer}")
    user = "Reference answers:\n\n" + "\n\n".join(refs) + f"\n\nNEW question: {query}"
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def is_declined(text: str | None) -> bool:
    """True when the cheap model declined or produced nothing usable."""
    if text is None:
        return True
    stripped = text.strip()
    return not stripped or DECLINE_MARKER in stripped[: len(DECLINE_MARKER) + 16]
