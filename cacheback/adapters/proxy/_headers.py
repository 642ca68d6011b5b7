"""The ``X-Cacheback-*`` response headers: what each answer says about the cache, and a
middleware that puts the four basic ones on every response."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...engine._job import Job
from ...engine._types import Outcome, Tier

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


class CacheHeadersMiddleware:
    """Guarantees the four ``X-Cacheback-*`` headers on every HTTP response (health,
    errors and 404s included); responses that set them keep theirs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k for k, _ in headers}
                for name, value in _DEFAULTS:
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


_DEFAULTS = [(k.encode(), v.encode()) for k, v in cache_headers(NO_TIER)]
