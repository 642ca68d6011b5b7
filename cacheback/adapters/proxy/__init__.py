"""The caching proxy: an OpenAI- and Anthropic-compatible HTTP server (``cacheback-proxy``).

Point any client's ``base_url`` at it (``http://localhost:8080/v1`` for OpenAI SDKs,
``http://localhost:8080`` for Anthropic SDKs): answers come from the cache when they can,
from the provider otherwise, with ``X-Cacheback-*`` headers saying which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._app import configure_logging, create_app
from ._config import CONFIG_ENV, ProxyConfig, parse_args


def main(argv: Sequence[str] | None = None) -> int:
    """``cacheback-proxy``: serve the proxy with uvicorn until SIGINT/SIGTERM."""
    import dataclasses
    import math
    import os

    import uvicorn

    from ..._logging import get_logger
    from ...core._errors import ConfigError

    try:
        config = parse_args(argv)
        config.settings()  # fail fast on bad CACHEBACK_* values
        if config.gc_freeze is None:  # this process (and its workers) is the proxy's own
            config = dataclasses.replace(config, gc_freeze=True)
    except ConfigError as exc:
        print(f"cacheback-proxy: {exc}")
        return 2
    configure_logging(config.log_level)
    for note in config.notes:
        get_logger("cacheback.proxy").warning(note)
    get_logger("cacheback.proxy").info(
        "starting",
        url=f"http://{config.host}:{config.port}",
        workers=config.workers,
        openai_upstream=config.openai_base_url,
        anthropic_upstream=config.anthropic_base_url,
        auth=config.auth_mode,
    )
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": config.access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": math.ceil(config.graceful_timeout),
        "server_header": False,
        "proxy_headers": False,
        "http": _http_protocol(),
    }
    if config.workers == 1:
        uvicorn.run(create_app(config), **options)
    else:
        # Workers are spawned processes that import the app: hand them the config.
        os.environ[CONFIG_ENV] = config.to_json()
        app = "cacheback.adapters.proxy._app:app_from_env"
        _run_workers(uvicorn.Config(app, factory=True, workers=config.workers, **options))
    return 0


def _http_protocol() -> Any:
    """uvicorn's httptools protocol sending each answer in one write (``_server``), or
    uvicorn's own choice where httptools is missing."""
    try:
        from ._server import HeadHoldingProtocol
    except ImportError:
        return "auto"
    return HeadHoldingProtocol


def _run_workers(config: Any) -> None:
    """``uvicorn.run`` for several workers, with TCP_NODELAY on the shared socket.

    uvicorn binds that socket itself with protocol 0, so asyncio never sets TCP_NODELAY on
    the accepted connections (it only does for IPPROTO_TCP sockets): every response,
    written as headers then body, would wait ~40 ms for the client's delayed ACK. Accepted
    sockets inherit the option from the listening one.
    """
    import inspect
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kwargs: dict[str, Any] = {"sockets": [sock]}
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36
        kwargs["target"] = uvicorn.Server(config).run
    try:
        Multiprocess(config, **kwargs).run()
    except KeyboardInterrupt:
        pass


__all__ = ["ProxyConfig", "create_app", "main", "parse_args"]
