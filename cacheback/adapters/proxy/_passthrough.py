"""Every other ``/v1/*`` call (models, files, batches...): relayed as is, streamed both
ways and never cached."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._errors import ProxyError, provider_for, redact
from ._fallback import INVALID_PATH
from ._headers import ERROR_TIER, NO_TIER, cache_headers
from ._proxy import Endpoint, Proxy
from ._requests import read_body
from ._upstream import (
    RelayedStream,
    UnsafePath,
    UpstreamTimeout,
    UpstreamUnavailable,
    forward_headers,
    read_error_body,
    response_headers,
)
from ._wire import response


def passthrough_endpoint(proxy: Proxy) -> Endpoint:
    async def serve(request: Request) -> tuple[Response, str]:
        return await _relay(proxy, request)

    return proxy.metered("passthrough", serve)


async def _relay(proxy: Proxy, request: Request) -> tuple[Response, str]:
    path = request.url.path
    provider = provider_for(path, request.headers)
    headers = cache_headers(NO_TIER)
    # Relayed as the caller encoded it: decoding first would turn an id's "%2F" into a
    # real "/" and "%25" into a bare "%". (Dot segments are checked in every encoding.)
    raw_path = request.scope.get("raw_path")
    sent = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else path
    if not (sent == "/v1" or sent.startswith("/v1/")):
        sent = ""  # e.g. "/%761/..." routed as /v1: refused below as an invalid path
    upstream_path = sent[len("/v1") :] if provider == "openai" else sent
    try:
        try:
            # Checked first: "/v1/../admin" must not reach the provider with the server's key.
            url = proxy.url(provider, upstream_path, request.url.query)
        except UnsafePath:
            raise ProxyError(400, INVALID_PATH, code="invalid_path") from None
        caller = proxy.auth.authenticate(request.headers, provider)
        raw = await read_body(request, proxy.config.max_body_bytes)
    except ProxyError as err:
        return proxy.error(provider, err), ERROR_TIER
    out_headers = forward_headers(request.headers, caller.upstream_auth)
    # The body is relayed still encoded: only offer what the caller can decode.
    out_headers.append(("accept-encoding", request.headers.get("accept-encoding", "identity")))
    try:
        resp = await proxy.upstream.open(
            request.method, url, out_headers, raw or None, raise_for_status=False
        )
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return proxy.failure(provider, exc, headers), NO_TIER
    if resp.status_code >= 400:
        # Errors are small: read them whole, so that key-shaped text is scrubbed.
        proxy.metrics.upstream_error(provider, str(resp.status_code))
        body = await read_error_body(resp)
        error_headers = [*response_headers(resp.headers, reencoded=True), *headers]
        return response(resp.status_code, redact(body, proxy.auth.secrets), error_headers), NO_TIER
    stream = RelayedStream(resp, provider=provider, api="other", raw=True)
    stream.add_headers(headers)
    return stream, NO_TIER
