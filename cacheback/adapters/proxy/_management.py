"""The cache's own endpoints: ``/v1/cache/stats``, ``/v1/cache/report-wrong-hit`` (and
``report-correct-hit``), the
negative cache (``/v1/cache/negative``), ``/health``, ``/metrics`` and the dashboard."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core._errors import CachebackError
from ...core._feedback import Verdict
from .._dashboard_view import negative_dict
from ._dashboard import dashboard_routes
from ._errors import Provider, ProxyError, provider_for
from ._fallback import METHODS, method_not_allowed, not_found
from ._proxy import Endpoint, Proxy
from ._requests import _reject_lone_surrogates, expect, parse_json, read_body
from ._wire import dumps, response, safe_json


def management_routes(proxy: Proxy) -> list[Route]:
    def bound(handler: Callable[[Proxy, Request], Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return await handler(proxy, request)

        return endpoint

    dashboard = dashboard_routes(proxy)
    return [
        Route("/v1/cache/stats", bound(_stats), methods=["GET"]),
        Route("/v1/cache/report-wrong-hit", bound(_report_wrong_hit), methods=["POST"]),
        Route("/v1/cache/report-correct-hit", bound(_report_correct_hit), methods=["POST"]),
        Route("/v1/cache/negative", bound(_negative_list), methods=["GET"]),
        Route("/v1/cache/negative", bound(_negative_add), methods=["POST"]),
        Route("/v1/cache/negative/{entry_id}", bound(_negative_remove), methods=["DELETE"]),
        Route(
            "/v1/cache/negative/{entry_id}/false-positive",
            bound(_negative_false_positive),
            methods=["POST"],
        ),
        *[r for r in dashboard if r.path.startswith("/v1/")],
        # The rest of /v1/cache is ours too: never relayed upstream with the caller's key.
        Route("/v1/cache", _own_fallback, methods=METHODS),
        Route("/v1/cache/{rest:path}", _own_fallback, methods=METHODS),
        Route("/health", bound(_health), methods=["GET"]),
        Route("/metrics", bound(_metrics), methods=["GET"]),
        *[r for r in dashboard if not r.path.startswith("/v1/")],
    ]


_MAX_ENTRY_ID = 2**63 - 1  # SQLite's largest integer
_ALLOWED = {
    "/v1/cache/stats": "GET, HEAD",
    "/v1/cache/report-wrong-hit": "POST",
    "/v1/cache/negative": "GET, HEAD, POST",
    "/v1/cache/dashboard": "GET, HEAD",
}
_MAX_NEGATIVE_QUERY = 32 * 1024
_MAX_LABEL = 200


async def _own_fallback(request: Request) -> Response:
    path = request.url.path
    allow = _ALLOWED.get(path)
    if allow is None and path.startswith("/v1/cache/negative/"):
        allow = "POST" if path.endswith("/false-positive") else "DELETE"
    return not_found(request) if allow is None else method_not_allowed(request, allow)


def _provider_of(request: Request) -> Provider:
    return provider_for(request.url.path, request.headers)


async def _stats(proxy: Proxy, request: Request) -> Response:
    provider = _provider_of(request)
    if proxy.config.auth_required:
        try:
            proxy.auth.authenticate(request.headers, provider)
        except ProxyError as err:
            return proxy.error(provider, err)
    stats = await proxy.engine.admin.stats()
    stats["proxy"] = {
        "worker": os.getpid(),
        "in_flight": proxy.metrics.in_flight,
        "requests": sum(proxy.metrics.requests.values()),
        "auth": proxy.config.auth_mode,
    }
    return response(200, dumps(safe_json(stats)))


async def _report_wrong_hit(proxy: Proxy, request: Request) -> Response:
    """An entry served a wrong answer: not again for that question or a near paraphrase
    (only entries of the caller's tenant; ``similarity``, optional, is the hit's)."""
    return await _report_hit(proxy, request, Verdict.WRONG)


async def _report_correct_hit(proxy: Proxy, request: Request) -> Response:
    """An entry served a right answer: a threshold raised by reports relaxes a step."""
    return await _report_hit(proxy, request, Verdict.CORRECT)


async def _report_hit(proxy: Proxy, request: Request, verdict: Verdict) -> Response:
    provider = _provider_of(request)
    try:
        caller = proxy.auth.authenticate(request.headers, provider)
        body = parse_json(await read_body(request, 64 * 1024))
        entry_id = body.get("entry_id") if isinstance(body, dict) else None
        expect(
            isinstance(entry_id, int) and not isinstance(entry_id, bool),
            "entry_id",
            "an integer",
            entry_id,
        )
        assert isinstance(entry_id, int)
        if not 1 <= entry_id <= _MAX_ENTRY_ID:
            raise ProxyError(
                400,
                f"Invalid 'entry_id': expected 1 to {_MAX_ENTRY_ID}, but got {entry_id} instead.",
                code="invalid_value",
                param="entry_id",
            )
        similarity = _similarity(body) if verdict is Verdict.WRONG else None
    except ProxyError as err:
        return proxy.error(provider, err)
    engine = proxy.engine
    entry = await engine.admin.get(entry_id)
    owner = entry.metadata.get("namespace") if entry is not None else None
    if not isinstance(owner, str) or not (owner == caller.tenant or owner.startswith(caller.tenant + "/")):
        # Another tenant's entry is reported exactly like a missing one: no probing.
        missing = ProxyError(
            404,
            f"No cache entry {entry_id} was served to you.",
            code="entry_not_found",
            param="entry_id",
            kind="not_found_error",
        )
        return proxy.error(provider, missing)
    result = await engine.admin.feedback(entry_id, verdict, similarity=similarity)
    return response(
        200,
        dumps({"entry_id": entry_id, "removed": result.removed, "hit_threshold": result.hit_threshold}),
    )


def _similarity(body: dict[str, Any]) -> float | None:
    """The optional ``similarity`` of a wrong hit (the ``X-Cacheback-Similarity`` it came with)."""
    value = body.get("similarity")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ProxyError(
            400,
            f"Invalid 'similarity': expected a number in (0, 1], but got {value!r} instead.",
            code="invalid_value",
            param="similarity",
        )
    return float(value)


async def _health(proxy: Proxy, request: Request) -> Response:
    engine = proxy.engine_if_started
    ready = proxy.ready and engine is not None and engine.running and engine.store is not None
    cache = engine.health() if engine is not None else None
    degraded = cache is not None and cache["status"] != "ok"
    body: dict[str, Any] = {
        # Ready while degraded: requests are served (uncached), so no restart loop.
        "status": ("degraded" if degraded else "ok") if ready else "unavailable",
        "live": True,
        "ready": ready,
        "worker": os.getpid(),
    }
    if engine is not None:
        body["cache"] = cache
        body["embedder"] = _embedder_summary(engine.embedder)
        body["embedder_reason"] = engine.embedder_reason()  # why none, or why a fallback
        body["embedders"] = proxy.media.embedders(engine.embedder)
        body["store"] = type(engine.store).__name__ if engine.store is not None else None
    return response(200 if ready else 503, dumps(body))


def _embedder_summary(embedder: Any) -> dict[str, Any] | None:
    """Which embedder runs and on what (``runtime: "numpy"`` with its ``reason`` after a fallback)."""
    if embedder is None:
        return None
    described = embedder.describe()
    return {
        "name": embedder.name,
        "runtime": described.get("runtime"),
        "reason": described.get("reason"),
        "loaded": described.get("loaded"),
    }


async def _metrics(proxy: Proxy, request: Request) -> Response:
    engine = proxy.engine_if_started
    stats: dict[str, Any] | None = None
    queues: dict[str, int] = {}
    if engine is not None and engine.running:
        try:
            stats = await engine.admin.stats()
            queues = engine.queue_depths()
        except CachebackError:
            stats = None
    text = proxy.metrics.render(stats, queues)
    return response(200, text.encode(), media_type="text/plain; version=0.0.4; charset=utf-8")


# -- the negative cache (operators only: see Authenticator.admin) ------------------------

Admin = Callable[[Proxy, Request], Awaitable[Response]]


def _admin(write: bool) -> Callable[[Admin], Admin]:
    """An operator route: the admin check first; its ProxyError, or an unusable cache
    (503), answered in the provider's format."""

    def wrap(handler: Admin) -> Admin:
        async def endpoint(proxy: Proxy, request: Request) -> Response:
            provider = _provider_of(request)
            try:
                proxy.auth.admin(request.headers, write=write)
                return await handler(proxy, request)
            except ProxyError as err:
                return proxy.error(provider, err)
            except CachebackError as exc:
                unavailable = ProxyError(503, f"The cache is unavailable ({type(exc).__name__}).")
                return proxy.error(provider, unavailable)

        return endpoint

    return wrap


def _entry_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= _MAX_ENTRY_ID:
        raise ProxyError(
            400,
            f"Invalid 'entry_id': expected 1 to {_MAX_ENTRY_ID}.",
            code="invalid_value",
            param="entry_id",
        )
    return int(raw)


def _text_field(body: dict[str, Any], name: str, default: str | None, limit: int) -> str:
    value = body.get(name, default)
    expect(isinstance(value, str) and bool(value.strip()), name, "a non-empty string", value)
    assert isinstance(value, str)
    if len(value) > limit:
        raise ProxyError(
            400, f"Invalid '{name}': longer than {limit} characters.", code="invalid_value", param=name
        )
    return value


@_admin(write=False)
async def _negative_list(proxy: Proxy, request: Request) -> Response:
    category = request.query_params.get("category") or None
    entries = await proxy.engine.blocklist.list(category, None)
    return response(200, dumps({"object": "list", "data": [negative_dict(e) for e in entries]}))


@_admin(write=True)
async def _negative_add(proxy: Proxy, request: Request) -> Response:
    raw = await read_body(request, 64 * 1024)
    body = parse_json(raw)
    expect(isinstance(body, dict), "body", "a JSON object", body)
    assert isinstance(body, dict)
    _reject_lone_surrogates(raw, body)
    query = _text_field(body, "query", None, _MAX_NEGATIVE_QUERY)
    reason = _text_field(body, "reason", "blocked", _MAX_LABEL)
    category = _text_field(body, "category", "general", _MAX_LABEL)
    severity = body.get("severity", 1)
    expect(
        isinstance(severity, int) and not isinstance(severity, bool) and 1 <= severity <= 10,
        "severity",
        "an integer from 1 to 10",
        severity,
    )
    assert isinstance(severity, int)
    entry_id = await proxy.engine.blocklist.add(query, reason=reason, category=category, severity=severity)
    return response(200, dumps({"entry_id": entry_id}))


@_admin(write=True)
async def _negative_remove(proxy: Proxy, request: Request) -> Response:
    entry_id = _entry_id(request.path_params["entry_id"])
    removed = await proxy.engine.blocklist.remove(entry_id)
    return response(200, dumps({"entry_id": entry_id, "removed": removed}))


@_admin(write=True)
async def _negative_false_positive(proxy: Proxy, request: Request) -> Response:
    entry_id = _entry_id(request.path_params["entry_id"])
    result = await proxy.engine.blocklist.report_false_positive(entry_id)
    if not result.get("found"):
        raise ProxyError(
            404,
            f"No negative entry {entry_id}.",
            code="entry_not_found",
            param="entry_id",
            kind="not_found_error",
        )
    return response(200, dumps(safe_json(result)))
