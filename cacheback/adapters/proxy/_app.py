"""The proxy's ASGI app (Starlette): provider-compatible endpoints in front of the engine.

One ``AsyncEngine`` per process, opened in the lifespan and closed (persister flushed)
after uvicorn has let in-flight requests finish. The cached APIs go through the engine
(``_cached``), the cache's own endpoints answer from it (``_management``), any other
``/v1/*`` call is relayed as is (``_passthrough``) and the rest gets a JSON error
(``_fallback``).
"""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from ..._logging import get_logger
from ...core._ports import LLM, Embedder, Store
from ...engine._engine import AsyncEngine
from ..providers import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from ._cached import cached_endpoint
from ._config import CONFIG_ENV, ProxyConfig
from ._fallback import METHODS, EdgeMiddleware, http_error
from ._management import management_routes
from ._passthrough import passthrough_endpoint
from ._proxy import Proxy


def create_app(
    config: ProxyConfig | None = None,
    *,
    engine: AsyncEngine | None = None,
    embedder: Embedder | str | None = "auto",
    llm: LLM | None = None,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The proxy as an ASGI app.

    ``config`` defaults to the environment (``ProxyConfig.from_env()``). ``engine`` is used
    as given (opened and closed by the app only if it is not running yet); otherwise one
    is built from the config with ``embedder`` (``"auto"``: the default MiniLM), ``llm``
    (the synthesis model, closed with the app; None: the one the ``CACHEBACK_SYNTHESIS_*``
    settings describe, if any) and ``store`` (None: the embedded one).
    """
    proxy = Proxy(
        config or ProxyConfig.from_env(),
        engine=engine,
        embedder=embedder,
        llm=llm,
        store=store,
        transport=transport,
    )
    routes = [
        Route("/v1/chat/completions", cached_endpoint(proxy, OPENAI_CHAT), methods=["POST"]),
        Route("/v1/responses", cached_endpoint(proxy, OPENAI_RESPONSES), methods=["POST"]),
        Route("/v1/messages", cached_endpoint(proxy, ANTHROPIC_MESSAGES), methods=["POST"]),
        *management_routes(proxy),
        # Last: it matches every /v1 path the routes above did not take.
        Route("/v1/{path:path}", passthrough_endpoint(proxy), methods=METHODS),
    ]
    app = Starlette(
        routes=routes,
        lifespan=proxy.lifespan,
        middleware=[Middleware(EdgeMiddleware)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.proxy = proxy
    return app


def configure_logging(level: str) -> None:
    """The proxy process prints cacheback's events at ``level`` on stderr (the engine logs
    each request at debug). The ``cacheback`` logger alone: never structlog's global setup."""
    from ..._logging import log_to_stderr

    log_to_stderr(level)


def app_from_env() -> Starlette:
    """The app factory ``--workers`` processes import (config handed over by ``main``)."""
    raw = os.environ.get(CONFIG_ENV)
    config = ProxyConfig.from_json(raw) if raw else ProxyConfig.from_env()
    configure_logging(config.log_level)
    if not raw:  # handed over by main, which logged them already
        for note in config.notes:
            get_logger("cacheback.proxy").warning(note)
    return create_app(config)


__all__ = ["Proxy", "app_from_env", "configure_logging", "create_app"]
