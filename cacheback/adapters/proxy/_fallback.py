"""Answers for what no endpoint handled: unknown paths (404), wrong methods (405) and,
last, any exception an endpoint let escape (500). All in the provider's error format with
the ``X-Cacheback-*`` headers, so SDKs raise their usual classes instead of choking on
Starlette's plain text."""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cacheback._logging import get_logger

from ._errors import Provider, error_body, provider_for
from ._headers import ERROR_TIER, add_default_headers, cache_headers
from ._wire import response

log = get_logger("cacheback.proxy")

# What the catch-all routes take (a function endpoint defaults to GET alone).
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _where(request: Request) -> str:
    return f"{request.method} {request.url.path[:200]}"


#: The refusal of a path with "." / ".." segments or control characters (a 400, not a 404).
INVALID_PATH = "Invalid path: '.' and '..' segments and control characters are not allowed."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def invalid_path(provider: Provider) -> Response:
    body = error_body(provider, 400, INVALID_PATH, code="invalid_path")
    return response(400, body, cache_headers(ERROR_TIER))


def not_found(request: Request) -> Response:
    provider = provider_for(request.url.path, request.headers)
    if _CONTROL.search(str(request.scope.get("path", ""))):
        # The routes' patterns stop at a decoded line break ("%0d%0a" then text): such a
        # path matches no route, but it is refused as invalid, as on the relayed routes.
        # (The scope's path: ``request.url`` drops tabs and line breaks while parsing.)
        return invalid_path(provider)
    body = error_body(provider, 404, f"Invalid URL ({_where(request)})", code="unknown_url")
    return response(404, body, cache_headers(ERROR_TIER))


def method_not_allowed(request: Request, allow: str) -> Response:
    provider = provider_for(request.url.path, request.headers)
    message = f"Method not allowed ({_where(request)}); allowed: {allow}."
    body = error_body(provider, 405, message, code="method_not_allowed")
    return response(405, body, [*cache_headers(ERROR_TIER), ("allow", allow)])


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method), in the provider's format."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return method_not_allowed(request, (exc.headers or {}).get("Allow", ""))
    if exc.status_code == 404:
        return not_found(request)
    provider = provider_for(request.url.path, request.headers)
    body = error_body(provider, exc.status_code, str(exc.detail))
    return response(exc.status_code, body, cache_headers(ERROR_TIER))


class EdgeMiddleware:
    """Every response gets the four basic ``X-Cacheback-*`` headers, and an exception no
    endpoint caught becomes a JSON 500 (if nothing was sent yet).

    The exception is logged by type only and not re-raised: a message or traceback can
    quote a header value (h11 and httpx put the offending value in theirs), that is, a key.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                add_default_headers(message)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            # repr: a control character in the path must not forge a log line
            path = repr(str(scope.get("path", ""))[:200])
            log.error("unhandled error", error=type(exc).__name__, path=path)
            if started:
                return  # the server closes the connection mid-body: the client sees a cut
            provider = provider_for(scope.get("path", ""), Headers(scope=scope))
            body = error_body(provider, 500, "The proxy failed to handle the request.", code="internal_error")
            await response(500, body, cache_headers(ERROR_TIER))(scope, receive, send)
