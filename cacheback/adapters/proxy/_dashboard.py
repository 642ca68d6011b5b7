"""``GET /dashboard``: one static page (HTML, JS, CSS served from the package, no CDN), and
``GET /v1/cache/dashboard``, the JSON it polls.

The page holds no data: it asks for the admin key and fetches the figures with it, so
loading the page itself needs no credential. The figures are this process's rollups and
guard vetoes plus the engine's persisted counters; cached question text is included only
when the operator turned content display on (``CACHEBACK_DASHBOARD_CONTENT``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core._errors import CachebackError
from ._errors import ProxyError, provider_for
from ._proxy import Proxy
from ._rollup import DAY_MINUTES, Bucket, series
from ._wire import dumps, response, safe_json

# The page's scripts, styles and data come from this origin only; nothing inline runs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
)
_ASSETS = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
TOP_LIMIT = 10
NEGATIVE_LIMIT = 200
_TOP_TTL = 5.0  # seconds: the top list is one table scan, not redone on every poll


class EntryHits(Protocol):
    id: int
    scope: str
    query: str
    hits: int
    last_access: float


class _TopSource(Protocol):
    async def top_entries(self, limit: int = 10) -> Sequence[EntryHits]: ...


def dashboard_routes(proxy: Proxy) -> list[Route]:
    assets: dict[str, bytes] = {}
    top_memo: list[tuple[float, list[EntryHits] | None]] = []

    async def asset(request: Request) -> Response:
        name, media_type = _ASSETS[request.url.path]
        if name not in assets:
            assets[name] = await anyio.to_thread.run_sync(_read_asset, name)
        return response(200, assets[name], SECURITY_HEADERS, media_type)

    async def top(now: float) -> list[EntryHits] | None:
        if top_memo and now - top_memo[0][0] < _TOP_TTL:
            return top_memo[0][1]
        source = proxy.engine.store
        finder = getattr(source, "top_entries", None)
        found = list(await finder(TOP_LIMIT)) if finder is not None else None
        top_memo[:] = [(now, found)]
        return found

    async def data(request: Request) -> Response:
        provider = provider_for(request.url.path, request.headers)
        try:
            proxy.auth.admin(request.headers, write=False)
        except ProxyError as err:
            return proxy.error(provider, err)
        now = time.time()
        engine = proxy.engine
        stats: dict[str, Any] | None = None
        store_error: str | None = None
        negatives: list[dict[str, Any]] = []
        top_entries: list[EntryHits] | None = None
        size: int | None = None
        try:
            stats = await engine.get_stats()
            negatives = [negative_dict(e) for e in await engine.negative_list(None, NEGATIVE_LIMIT)]
            top_entries = await top(now)
            size = await anyio.to_thread.run_sync(store_bytes, stats.get("store") or {})
        except CachebackError as exc:
            store_error = type(exc).__name__
        view = dashboard_view(
            stats=stats,
            store_error=store_error,
            buckets=proxy.metrics.rollup.buckets(),
            now=now,
            vetoes=dict(proxy.metrics.guard_vetoes),
            top=top_entries,
            negatives=negatives,
            size_bytes=size,
            content=proxy.config.dashboard_content,
            ready=proxy.ready and engine.running,
            worker=os.getpid(),
            requests=sum(proxy.metrics.requests.values()),
        )
        return response(200, dumps(safe_json(view)), (("cache-control", "no-store"),))

    return [
        *(Route(path, asset, methods=["GET"]) for path in _ASSETS),
        Route("/v1/cache/dashboard", data, methods=["GET"]),
    ]


def _read_asset(name: str) -> bytes:
    return (resources.files(__package__ or __name__) / "dashboard" / name).read_bytes()


def store_bytes(store: Mapping[str, Any]) -> int | None:
    """Bytes on disk of an embedded store's database (with its WAL), None for other stores."""
    database = store.get("database")
    if not isinstance(database, str):
        return None
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(database + suffix).st_size
        except OSError:
            continue
    return total


def negative_dict(e: Any) -> dict[str, Any]:
    return {
        "entry_id": e.id,
        "query": e.query,
        "reason": e.reason,
        "category": e.category,
        "severity": e.severity,
        "false_positives": e.false_positives,
        "created_at": e.created_at,
    }


def dashboard_view(
    *,
    stats: Mapping[str, Any] | None,
    store_error: str | None,
    buckets: list[Bucket],
    now: float,
    vetoes: Mapping[str, int],
    top: Sequence[EntryHits] | None,
    negatives: list[dict[str, Any]],
    size_bytes: int | None,
    content: bool,
    ready: bool,
    worker: int,
    requests: int,
) -> dict[str, Any]:
    """Everything the page shows, from the engine's stats and this process's rollups."""
    s: Mapping[str, Any] = stats or {}
    savings: Mapping[str, Any] = s.get("savings") or {}
    store_info: Mapping[str, Any] = s.get("store") or {}
    embedder: Mapping[str, Any] | None = s.get("embedder")
    return {
        "generated_at": now,
        "worker": worker,
        "content_display": content,
        "totals": {
            "requests": requests,  # answered by this process since it started
            "lookups": s.get("lookups", 0),
            "hits": s.get("hits", 0),
            "hit_rate": s.get("hit_rate", 0.0),
            "tiers": s.get("tiers", {}),
            "saved_usd": savings.get("saved_usd", 0.0),
            "net_saved_usd": savings.get("net_saved_usd", 0.0),
            "spent_usd": savings.get("spent_usd", 0.0),
            "savings_rate": savings.get("savings_rate", 0.0),
            "saved_tokens": savings.get("saved_tokens", 0),
            "cache_errors": s.get("cache_errors", 0),
        },
        "cost": s.get("cost", {}),
        "series": {
            "hour": series(buckets, now, 60, 1),
            "day": series(buckets, now, DAY_MINUTES, 15),
        },
        "latency_ms": s.get("latency_ms", {}),
        "entries": {"count": s.get("entries"), "size_bytes": size_bytes},
        "top_questions": None
        if top is None
        else [
            {
                "entry_id": e.id,
                "hits": e.hits,
                "last_access": e.last_access,
                **({"query": e.query} if content else {}),
            }
            for e in top
        ],
        "negative": {"count": s.get("negative_entries", len(negatives)), "entries": negatives},
        "guard_vetoes": dict(sorted(vetoes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "health": {
            "ready": ready and store_error is None,
            "store": {
                "ok": store_error is None and bool(store_info.get("open", stats is not None)),
                "error": store_error,
                "backend": store_info.get("backend"),
                "index": store_info.get("index"),
                "index_size": store_info.get("index_size"),
            },
            "embedders": []
            if not embedder
            else [
                {
                    "name": embedder.get("name"),
                    "model": embedder.get("model"),
                    "dim": embedder.get("dim"),
                    "compute": embedder.get("compute"),
                    "ok": ready,  # loaded with the engine; serving while the engine runs
                }
            ],
        },
    }
