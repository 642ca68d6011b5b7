"""``Proxy``: the state every request of one process shares (config, auth, metrics, the
engine and the upstream client), its lifespan, and the error answers all endpoints give."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from cacheback._logging import get_logger

from ...core._errors import CachebackError
from ...core._ports import LLM, Embedder, Store
from ...engine._engine import AsyncEngine
from ..embedders._media_tier import MediaTier
from ._auth import Authenticator
from ._config import ProxyConfig
from ._errors import Provider, ProxyError, redact
from ._gc import ProxyGc
from ._headers import ERROR_TIER, cache_headers
from ._metrics import Metrics
from ._upstream import (
    Upstream,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    aclose_if_closable,
    join_url,
)
from ._wire import response

log = get_logger("cacheback.proxy")

Endpoint = Callable[[Request], Awaitable[Response]]


class Proxy:
    """State shared by every request of one process."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        engine: AsyncEngine | None = None,
        embedder: Embedder | str | None = "auto",
        llm: LLM | None = None,
        store: Store | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.auth = Authenticator(config)
        self.metrics = Metrics()
        self.gc = ProxyGc(bool(config.gc_freeze))
        self.settings = config.settings()
        self.media = MediaTier(self.settings)
        self._engine_arg = engine
        self._embedder = embedder
        self._llm = llm
        self._store = store
        self._transport = transport
        self._engine: AsyncEngine | None = None
        self._upstream: Upstream | None = None
        self.ready = False

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise CachebackError("the proxy is not started")
        return self._engine

    @property
    def engine_if_started(self) -> AsyncEngine | None:
        """The engine, or None before the lifespan has opened it (health and metrics)."""
        return self._engine

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise CachebackError("the proxy is not started")
        return self._upstream

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            self._upstream = await Upstream.start(self.config, self._transport)
            stack.push_async_callback(self._upstream.aclose)
            engine = self._engine_arg
            if engine is None:
                llm = self._llm
                if llm is None and self.settings.synthesis.synthesis_mode != "off":
                    from ..llm import llm_from_settings

                    # Built here rather than by the engine: this refuses a synthesis
                    # endpoint that is the proxy itself (every synthesis would loop).
                    address = f"http://{self.config.host}:{self.config.port}"
                    llm = llm_from_settings(self.settings.synthesis, proxy_address=address)
                if llm is not None:
                    stack.push_async_callback(aclose_if_closable, llm)
                engine = AsyncEngine(self.settings, store=self._store, embedder=self._embedder, llm=llm)
            media = self.media
            engine.describers["embedders"] = lambda: media.embedders(engine.embedder)
            if not engine.running:
                # Exits before the upstream client closes: pending fills are flushed first.
                await stack.enter_async_context(engine)
            cache = engine.health()
            if cache["status"] != "ok":
                if self.config.require_cache:
                    raise CachebackError(f"--require-cache: the cache cannot be used: {cache['reason']}")
                log.error(
                    "PASS-THROUGH: the cache cannot be used; every request goes to the provider "
                    "uncached while the store is retried (--require-cache exits instead)",
                    reason=cache["reason"],
                )
            self._engine = engine
            self.gc.started()
            self.ready = True
            log.info(
                "proxy ready",
                worker=os.getpid(),
                auth=self.config.auth_mode,
                embedder=engine.embedder.name if engine.embedder is not None else None,
                embedder_reason=engine.embedder_reason(),
                gc_frozen_objects=self.gc.frozen,
            )
            try:
                yield
            finally:
                self.ready = False
                log.info("proxy draining", worker=os.getpid())

    def metered(self, name: str, serve: Callable[[Request], Awaitable[tuple[Response, str]]]) -> Endpoint:
        """``serve`` (a response and its tier) as an endpoint counted in the metrics under
        ``name``; one that raises counts as a 500 in the ``error`` tier, like the JSON 500
        the app's last-resort handler answers for it."""

        async def handle(request: Request) -> Response:
            t0 = time.perf_counter()
            self.metrics.in_flight += 1
            served_tier = ERROR_TIER
            status = 500
            try:
                resp, served_tier = await serve(request)
                status = resp.status_code
                return resp
            finally:
                self.metrics.in_flight -= 1
                self.metrics.observe(name, served_tier, status, time.perf_counter() - t0)
                self.gc.request_done()

        return handle

    def error(self, provider: Provider, err: ProxyError, tier: str = ERROR_TIER) -> Response:
        return response(err.status, err.body(provider), cache_headers(tier))

    def url(self, provider: Provider, path: str, query: str) -> str:
        """The provider's URL for ``path``; ``UnsafePath`` if it would leave the base."""
        base = self.config.openai_base_url if provider == "openai" else self.config.anthropic_base_url
        return join_url(base, path, query)

    def failure(self, provider: Provider, exc: BaseException, headers: list[tuple[str, str]]) -> Response:
        """An upstream failure in the provider's format (passed through when it has one)."""
        if isinstance(exc, UpstreamError):
            self.metrics.upstream_error(provider, str(exc.status))
            log.info("upstream error", provider=provider, status=exc.status)
            return response(exc.status, redact(exc.body, self.auth.secrets), [*exc.headers, *headers])
        if isinstance(exc, UpstreamTimeout):
            kind = "timeout"
            err = ProxyError(504, "The upstream provider did not answer in time.", code="upstream_timeout")
            log.warning("upstream timeout", provider=provider)
        elif isinstance(exc, UpstreamUnavailable):
            kind = "unreachable"
            err = ProxyError(502, "The upstream provider could not be reached.", code="upstream_unreachable")
            log.warning("upstream unreachable", provider=provider, error=type(exc.__cause__).__name__)
        else:
            kind = "internal"
            err = ProxyError(500, "The proxy failed to handle the request.", code="internal_error")
            log.error("proxy failure", provider=provider, error=type(exc).__name__)
        self.metrics.upstream_error(provider, kind)
        return response(err.status, err.body(provider), headers)
