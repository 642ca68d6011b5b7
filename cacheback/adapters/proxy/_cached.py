"""The cached endpoints (``/v1/chat/completions``, ``/v1/responses``, ``/v1/messages``):
a request is authenticated, parsed and keyed, run through the engine, and its outcome
(hit, miss, synthesis, block or failure) turned into the provider's response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from cacheback._logging import get_logger

from ...core._call import Streamed
from ...core._errors import CachebackError
from ...core._job import Job
from ...core._types import Tier
from ..providers import Codec as Api
from ..providers import RequestKey
from ..providers._key_memo import KEYS
from ..providers._media import OFFLOAD_CHARS
from ._auth import Caller
from ._errors import ProxyError
from ._handler import Call, upstream_call
from ._headers import ERROR_TIER, cache_headers, header_safe, outcome_headers
from ._proxy import Endpoint, Proxy
from ._requests import Controls, parse_body, parse_controls, read_body
from ._synthesis import Rendered
from ._upstream import Buffered, StreamingBody, forward_headers
from ._wire import SSE, dumps, response

log = get_logger("cacheback.proxy")


def cached_endpoint(proxy: Proxy, api: Api) -> Endpoint:
    async def serve(request: Request) -> tuple[Response, str]:
        return await _serve(proxy, request, api)

    return proxy.metered(api.name, serve)


async def _serve(proxy: Proxy, request: Request, api: Api) -> tuple[Response, str]:
    headers = request.headers
    try:
        caller = proxy.auth.authenticate(headers, api.provider)
        raw = await read_body(request, proxy.config.max_body_bytes)
        body = parse_body(raw, api)
        controls = parse_controls(headers)
        try:
            if len(raw) > OFFLOAD_CHARS:  # large inline media: decoding and hashing take a while
                keyed = partial(_lookup, proxy, api, body, headers, caller, controls)
                key, lookup = await anyio.to_thread.run_sync(keyed)
            else:
                key, lookup = _lookup(proxy, api, body, headers, caller, controls)
        except (TypeError, ValueError, RecursionError) as exc:
            # The key code reads every parameter: one it cannot read is the caller's input
            # (a type the checks above do not cover, e.g. inside extra_body), not our bug.
            log.info("unkeyable request", error=type(exc).__name__)
            message = "Invalid request: a parameter has a type or value the cache cannot read"
            raise ProxyError(400, f"{message} ({type(exc).__name__}).", code="invalid_request") from None
    except ProxyError as err:
        return proxy.error(api.provider, err), ERROR_TIER
    if lookup.cacheable and proxy.media.enabled:
        # Near-identical images and clips keyed alike (off the loop; exact keys otherwise).
        lookup.scope = (await proxy.media.resolve(key)).scope
    call = Call(
        api=api,
        body=body,
        raw=raw,
        url=proxy.url(api.provider, api.path, request.url.query),
        headers=forward_headers(headers, caller.upstream_auth),
        key=key,
    )
    upstream = upstream_call(proxy, call)
    try:
        job = await proxy.engine.run(lookup, upstream)
    except CachebackError as exc:
        # The cache itself is unusable (closing, broken): answer around it.
        log.warning("cache unavailable; passing through", error=type(exc).__name__)
        return await _around_cache(proxy, upstream.send, api)
    return _deliver(proxy, api, call, job)


def _lookup(
    proxy: Proxy, api: Api, body: dict[str, Any], headers: Headers, caller: Caller, controls: Controls
) -> tuple[RequestKey, Any]:
    # Beta headers switch features on, so they are part of the scope.
    beta = {k: v for k, v in headers.items() if k.endswith("-beta")}
    params = {**body, "extra_headers": beta} if beta else body
    key = KEYS.key(api, params, proxy.config.ignore_params)  # a repeat's key is kept
    namespace = caller.tenant if controls.namespace is None else f"{caller.tenant}/{controls.namespace}"
    lookup = key.lookup_request(
        namespace,
        read=not controls.bypass,
        store=not (controls.bypass or controls.no_store),
        ttl=controls.ttl,
        want_synthesis=proxy.settings.synthesis.synthesis_mode != "off",
    )
    if controls.bypass:
        lookup.cacheable = False
        lookup.bypass_reason = "bypass requested"
    return key, lookup


async def _around_cache(proxy: Proxy, send: Callable[[], Awaitable[Any]], api: Api) -> tuple[Response, str]:
    headers = cache_headers(Tier.BYPASS.value)
    headers.append(("x-cacheback-degraded", "engine"))
    try:
        answer = await send()
    except Exception as exc:
        return proxy.failure(api.provider, exc, headers), Tier.BYPASS.value
    return _rendered(answer, headers), Tier.BYPASS.value


def _deliver(proxy: Proxy, api: Api, call: Call, job: Job) -> tuple[Response, str]:
    outcome = job.outcome
    if job.error is not None:
        tier = Tier.UPSTREAM.value if job.request.cacheable else Tier.BYPASS.value
        return proxy.failure(api.provider, job.error, cache_headers(tier)), tier
    if outcome is None:
        error = cache_headers(ERROR_TIER)
        return proxy.failure(api.provider, RuntimeError("no outcome"), error), ERROR_TIER
    tier = outcome.tier
    if outcome.guard_reasons and not tier.is_hit:
        proxy.metrics.vetoed(outcome.guard_reasons)
    headers = outcome_headers(outcome, job)
    headers.append(("x-cacheback-modality", call.key.modality))
    if tier is Tier.BLOCKED:
        reason = outcome.negative.reason if outcome.negative is not None else "blocked"
        err = ProxyError(
            403,
            f"This request was blocked by the cache's negative list: {reason}",
            code="blocked_by_negative_cache",
            kind="permission_error",
        )
        headers.append(("x-cacheback-reason", header_safe(reason)))
        return response(403, err.body(api.provider), headers), tier.value
    if tier.is_hit and outcome.entry is not None:
        entry = outcome.entry
        data = call.render(entry.answer, entry.payload, keep_ids=True)
        if call.key.stream:
            return response(200, api.sse(data, call.key.stream_usage), headers, SSE), tier.value
        return response(200, dumps(data), headers), tier.value
    if tier is Tier.SYNTHESIS and job.synthesis is not None:
        return _rendered(call.synthesized(job.synthesis), headers), tier.value
    if job.response is None:
        return proxy.failure(api.provider, RuntimeError("no reply"), headers), tier.value
    return _rendered(job.response, headers), tier.value


def _rendered(r: Any, headers: list[tuple[str, str]]) -> Response:
    if isinstance(r, Streamed):
        # The relay sends the events the engine reads on their way (to cache the answer).
        r.response.events = r.events
        r = r.response
    if isinstance(r, StreamingBody):
        r.add_headers(headers)
        return r
    if isinstance(r, Buffered):
        return response(r.status, r.body, [*r.headers, *headers])
    if isinstance(r, Rendered):
        return response(200, r.body, headers, r.media_type)
    raise TypeError(f"unexpected answer {type(r).__name__}")
