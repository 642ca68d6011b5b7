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
from importlib import resources

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._dashboard_view import EntryHits, collect, dashboard_view
from ._errors import ProxyError, provider_for
from ._proxy import Proxy
from ._rollup import DAY_MINUTES, series
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
_TOP_TTL = 5.0  # seconds: the top list is one table scan, not redone on every poll


def dashboard_routes(proxy: Proxy) -> list[Route]:
    assets: dict[str, bytes] = {}
    top_memo: list[tuple[float, list[EntryHits] | None]] = []  # (when, what)

    async def asset(request: Request) -> Response:
        name, media_type = _ASSETS[request.url.path]
        if name not in assets:
            assets[name] = await anyio.to_thread.run_sync(_read_asset, name)
        return response(200, assets[name], SECURITY_HEADERS, media_type)

    async def data(request: Request) -> Response:
        provider = provider_for(request.url.path, request.headers)
        try:
            proxy.auth.admin(request.headers, write=False)
        except ProxyError as err:
            return proxy.error(provider, err)
        now = time.time()
        engine = proxy.engine
        fresh = not top_memo or now - top_memo[0][0] >= _TOP_TTL
        collected = await collect(engine, top=fresh)
        if fresh and collected.store_error is None:
            top_memo[:] = [(now, collected.top)]
        elif top_memo:
            collected.top = top_memo[0][1]
        buckets = proxy.metrics.rollup.buckets()
        view = dashboard_view(
            collected,
            now=now,
            content=proxy.config.dashboard_content,
            ready=proxy.ready and engine.running,
            series={
                "hour": series(buckets, now, 60, 1),
                "day": series(buckets, now, DAY_MINUTES, 15),
            },
            vetoes=dict(proxy.metrics.guard_vetoes),
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
