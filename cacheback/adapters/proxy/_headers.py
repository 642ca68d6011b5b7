"""The ``X-Cacheback-*`` response headers: what each answer says about the cache, and the
four basic ones every response carries (put on by ``_fallback.EdgeMiddleware``)."""

from __future__ import annotations

from starlette.types import Message

from ...core._job import Job
from ...core._types import Outcome, Tier

_NO_SIMILARITY = "none"
NO_TIER = "none"  # outside the cached APIs: pass-through, health, metrics, 404s
ERROR_TIER = "error"  # a request the proxy refused (or failed) itself


def cache_headers(
    tier: str, *, hit: bool = False, synthesized: bool = False, similarity: float | None = None
) -> list[tuple[str, str]]:
    return [
        ("x-cacheback-hit", "true" if hit else "false"),
        ("x-cacheback-synthesized", "true" if synthesized else "false"),
        ("x-cacheback-tier", tier),
        ("x-cacheback-similarity", _NO_SIMILARITY if similarity is None else f"{similarity:.4f}"),
    ]


def outcome_headers(outcome: Outcome, job: Job | None) -> list[tuple[str, str]]:
    tier = outcome.tier
    out = cache_headers(
        tier.value,
        hit=tier.is_hit,
        synthesized=tier is Tier.SYNTHESIS,
        similarity=None if outcome.similarity is None else float(outcome.similarity),
    )
    if tier.is_hit and outcome.entry is not None:
        out.append(("x-cacheback-entry-id", str(outcome.entry.id)))
    if job is not None and job.trace.get("coalesced"):
        out.append(("x-cacheback-coalesced", "true"))
    if tier is Tier.BYPASS and job is not None and job.request.bypass_reason:
        out.append(("x-cacheback-reason", header_safe(job.request.bypass_reason)))
    if job is not None and job.degraded:
        out.append(("x-cacheback-degraded", header_safe(job.degraded)))
    return out


def header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:200]


def add_default_headers(message: Message) -> None:
    """Put the four basic ``X-Cacheback-*`` headers on a response start that lacks them
    (health, errors and 404s included); a response that set them keeps its own."""
    headers = list(message.get("headers", []))
    present = {name for name, _ in headers}
    headers.extend(pair for pair in _DEFAULTS if pair[0] not in present)
    message["headers"] = headers


_DEFAULTS = [(k.encode(), v.encode()) for k, v in cache_headers(NO_TIER)]
