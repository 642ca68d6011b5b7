"""Proxy configuration: flags over ``CACHEBACK_*`` / provider environment variables.

Precedence: command-line flag, then environment variable, then default. The upstream base
URLs also read the SDKs' own ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` after the
``CACHEBACK_*`` names (``upstream_base_url``). The engine's
own settings (threshold, synthesis mode, TTL, cache directory, ...) come from
``Settings.from_env`` with the proxy's flags as overrides.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ...core._errors import ConfigError
from ...core._settings import Settings

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"  # like the Anthropic SDK: no /v1
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

# Where ``main`` hands the resolved config to ``--workers`` processes (they are spawned
# and rebuild the app from an import string, so the config travels in the environment).
CONFIG_ENV = "CACHEBACK_PROXY_CONFIG"

TenantMode = Literal["key", "shared"]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything the proxy process needs. Secrets are excluded from ``repr``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    anthropic_base_url: str = DEFAULT_ANTHROPIC_BASE_URL
    openai_api_key: str | None = field(default=None, repr=False)
    anthropic_api_key: str | None = field(default=None, repr=False)
    proxy_keys: tuple[str, ...] = field(default=(), repr=False)
    # The dashboard and the negative-cache routes: this key if set, else a proxy key.
    admin_key: str | None = field(default=None, repr=False)
    dashboard_content: bool = False  # show cached question text on the dashboard
    tenant_mode: TenantMode = "key"
    cache_dir: str | None = None
    store_url: str | None = field(default=None, repr=False)  # may carry a password
    similarity_threshold: float | None = None
    synthesis_mode: str | None = None
    ttl: float | None = None
    ignore_params: tuple[str, ...] = ()  # request parameters left out of the cache scope
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    upstream_timeout: float = 600.0  # seconds between bytes from the provider
    connect_timeout: float = 10.0
    max_connections: int = 256
    graceful_timeout: float = 30.0
    log_level: str = "info"
    access_log: bool = False
    # What the configuration chose to ignore, logged once logging is set up (main).
    notes: tuple[str, ...] = field(default=(), compare=False)
    require_cache: bool = False  # exit at start when the cache cannot be used (else pass through)
    # Freeze the garbage collector's view of the process after startup (``_gc``). None:
    # on in ``cacheback-proxy`` (its process is its own), off for ``create_app`` in a host.
    gc_freeze: bool | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1-65535, not {self.port}")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.max_body_bytes < 1:
            raise ConfigError("max_body_bytes must be positive")
        if self.upstream_timeout <= 0 or self.connect_timeout <= 0 or self.graceful_timeout < 0:
            raise ConfigError("timeouts must be positive")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.tenant_mode not in ("key", "shared"):
            raise ConfigError("tenant_mode must be 'key' or 'shared'")
        for url in (self.openai_base_url, self.anthropic_base_url):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"upstream base URL must be http(s): {url!r}")
        if any(not k for k in self.proxy_keys):
            raise ConfigError("proxy keys must not be empty")
        if self.admin_key is not None and not (self.admin_key.isascii() and self.admin_key.strip()):
            raise ConfigError("the admin key must be non-empty ASCII")

    @property
    def auth_required(self) -> bool:
        return bool(self.proxy_keys)

    @property
    def auth_mode(self) -> str:
        """How callers authenticate, as logged and reported by ``/v1/cache/stats``."""
        return "proxy-keys" if self.auth_required else "caller-keys"

    def settings(self, env: Mapping[str, str] | None = None) -> Settings:
        """The engine settings: ``CACHEBACK_*`` variables, then this config's overrides."""
        return Settings.from_env(
            dict(os.environ if env is None else env),
            cache_dir=self.cache_dir,
            store_url=self.store_url,
            similarity_threshold=self.similarity_threshold,
            synthesis_mode=self.synthesis_mode,
            cache_ttl=self.ttl,
        )

    # -- hand-over to worker processes ---------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProxyConfig:
        data = json.loads(text)
        data["proxy_keys"] = tuple(data.get("proxy_keys") or ())
        data["ignore_params"] = tuple(data.get("ignore_params") or ())
        data["notes"] = tuple(data.get("notes") or ())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        """The config from the environment alone (what ``create_app()`` uses by default)."""
        return parse_args([], env)


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def split_keys(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="cacheback-proxy",
        description="OpenAI- and Anthropic-compatible caching proxy (point base_url at it).",
    )
    p.add_argument(
        "--host",
        default=env.get("CACHEBACK_HOST", "127.0.0.1"),
        help="bind address (default 127.0.0.1; env CACHEBACK_HOST)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=_env_int(env, "CACHEBACK_PORT", DEFAULT_PORT),
        help="port (default $CACHEBACK_PORT or 8080)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=_env_int(env, "CACHEBACK_WORKERS", 1),
        help="worker processes sharing one cache directory (env CACHEBACK_WORKERS)",
    )
    p.add_argument(
        "--upstream-openai-base-url",
        default=None,
        help="OpenAI API base URL, with /v1 (env CACHEBACK_OPENAI_BASE_URL, then OPENAI_BASE_URL)",
    )
    p.add_argument(
        "--upstream-anthropic-base-url",
        default=None,
        help="Anthropic API base URL, without /v1 "
        "(env CACHEBACK_ANTHROPIC_BASE_URL, then ANTHROPIC_BASE_URL)",
    )
    p.add_argument("--cache-dir", default=None, help="cache directory (env CACHEBACK_CACHE_DIR)")
    p.add_argument(
        "--require-cache",
        action="store_true",
        default=env.get("CACHEBACK_REQUIRE_CACHE", "").lower() in ("1", "true", "yes", "on"),
        help="exit at start if the cache directory cannot be used (env CACHEBACK_REQUIRE_CACHE; "
        "default: start in pass-through with a warning and retry)",
    )
    p.add_argument(
        "--store-url",
        default=None,
        help="postgresql://… : share one cache between replicas (env CACHEBACK_STORE_URL)",
    )
    p.add_argument(
        "--proxy-keys",
        default=None,
        help="comma-separated keys clients must present (env CACHEBACK_PROXY_KEYS; "
        "prefer the variable: flags are visible in the process list)",
    )
    p.add_argument(
        "--shared-cache",
        action="store_true",
        default=_env_flag(env, "CACHEBACK_SHARED_CACHE"),
        help="all callers share one cache (default: one tenant per credential)",
    )
    p.add_argument(
        "--dashboard-content",
        action="store_true",
        default=_env_flag(env, "CACHEBACK_DASHBOARD_CONTENT"),
        help="show cached question text on /dashboard (default: ids and counts only; "
        "env CACHEBACK_DASHBOARD_CONTENT)",
    )
    p.add_argument(
        "--similarity-threshold",
        type=float,
        default=None,
        help="verbatim-hit threshold (env CACHEBACK_SIMILARITY_THRESHOLD, 0.92)",
    )
    p.add_argument(
        "--synthesis-mode",
        choices=("off", "auto", "always"),
        default=None,
        help="env CACHEBACK_SYNTHESIS_MODE",
    )
    p.add_argument("--ttl", type=float, default=None, help="seconds (env CACHEBACK_TTL, 86400)")
    p.add_argument(
        "--ignore-params",
        default=env.get("CACHEBACK_IGNORE_PARAMS"),
        help="comma-separated request parameters left out of the cache scope "
        "(e.g. temperature,seed; env CACHEBACK_IGNORE_PARAMS)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=_env_int(env, "CACHEBACK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        help="largest request body accepted (413 above)",
    )
    p.add_argument(
        "--upstream-timeout",
        type=float,
        default=_env_float(env, "CACHEBACK_UPSTREAM_TIMEOUT", 600.0),
        help="seconds to wait for provider bytes before a 504 (env CACHEBACK_UPSTREAM_TIMEOUT)",
    )
    p.add_argument(
        "--connect-timeout", type=float, default=_env_float(env, "CACHEBACK_CONNECT_TIMEOUT", 10.0)
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=_env_int(env, "CACHEBACK_MAX_CONNECTIONS", 256),
        help="pooled connections to the providers, per worker",
    )
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=_env_float(env, "CACHEBACK_GRACEFUL_TIMEOUT", 30.0),
        help="seconds in-flight requests get to finish on shutdown",
    )
    gc_env = env.get("CACHEBACK_PROXY_GC_FREEZE", "").strip().lower()
    p.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=None if not gc_env else gc_env in ("1", "true", "yes", "on"),
        help="freeze the objects built at startup out of Python's full garbage collections "
        "(env CACHEBACK_PROXY_GC_FREEZE; default: on for cacheback-proxy)",
    )
    p.add_argument("--log-level", default=env.get("CACHEBACK_LOG_LEVEL", "info"))
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    return p


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ProxyConfig:
    env = dict(os.environ if env is None else env)
    ns = build_parser(env).parse_args(argv)
    keys = (
        split_keys(ns.proxy_keys)
        if ns.proxy_keys is not None
        else split_keys(env.get("CACHEBACK_PROXY_KEYS"))
    )
    address = f"{ns.host}:{ns.port}"
    openai_base, openai_note = upstream_base_url(
        ns.upstream_openai_base_url, env, "OPENAI", DEFAULT_OPENAI_BASE_URL, address
    )
    anthropic_base, anthropic_note = upstream_base_url(
        ns.upstream_anthropic_base_url, env, "ANTHROPIC", DEFAULT_ANTHROPIC_BASE_URL, address
    )
    values: dict[str, Any] = {
        "host": ns.host,
        "port": ns.port,
        "workers": ns.workers,
        "openai_base_url": openai_base.rstrip("/"),
        "anthropic_base_url": anthropic_base.rstrip("/"),
        "openai_api_key": env.get("OPENAI_API_KEY") or None,
        "anthropic_api_key": env.get("ANTHROPIC_API_KEY") or None,
        "proxy_keys": keys,
        "admin_key": env.get("CACHEBACK_ADMIN_KEY") or None,
        "dashboard_content": ns.dashboard_content,
        "tenant_mode": "shared" if ns.shared_cache else "key",
        "cache_dir": str(Path(ns.cache_dir).expanduser()) if ns.cache_dir else None,
        "store_url": ns.store_url,
        "similarity_threshold": ns.similarity_threshold,
        "synthesis_mode": ns.synthesis_mode,
        "ttl": ns.ttl,
        "ignore_params": split_keys(ns.ignore_params),
        "max_body_bytes": ns.max_body_bytes,
        "upstream_timeout": ns.upstream_timeout,
        "connect_timeout": ns.connect_timeout,
        "max_connections": ns.max_connections,
        "graceful_timeout": ns.graceful_timeout,
        "log_level": ns.log_level,
        "access_log": ns.access_log,
        "notes": tuple(n for n in (openai_note, anthropic_note) if n),
        "require_cache": ns.require_cache,
        "gc_freeze": ns.gc_freeze,
    }
    return ProxyConfig(**values)


def upstream_base_url(
    flag: str | None, env: Mapping[str, str], provider: str, default: str, address: str
) -> tuple[str, str | None]:
    """A provider's upstream base URL and, if one was ignored, why.

    The flag, then ``CACHEBACK_<P>_BASE_URL``, then the SDK's own ``<P>_BASE_URL``, then the
    provider's API. The SDK's variable is often set in the same shell to send clients *to*
    this proxy: one that points at the proxy's own address is ignored, not followed into a
    loop of the proxy calling itself.
    """
    from ..llm._openai_compatible import same_endpoint

    option = f"--upstream-{provider.lower()}-base-url"
    if flag:
        check_base_url(option, flag)
        return flag, None
    own = env.get(f"CACHEBACK_{provider}_BASE_URL")
    if own:
        check_base_url(f"CACHEBACK_{provider}_BASE_URL", own)
        return own, None
    sdk = env.get(f"{provider}_BASE_URL")
    if sdk:
        check_base_url(f"{provider}_BASE_URL", sdk)
        if same_endpoint(sdk, address):
            return default, (
                f"{provider}_BASE_URL ({sdk}) points at this proxy itself: ignored, the upstream is "
                f"{default} (set CACHEBACK_{provider}_BASE_URL or {option} to choose another)"
            )
        return sdk, None
    return default, None


def check_base_url(flag: str, url: str) -> None:
    """An upstream base is scheme, host and an optional path prefix: paths are appended to
    it, so a query or fragment there would swallow them."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{flag} must be an http(s) URL, got {url!r}")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise ConfigError(f"{flag} must not have a query or fragment, got {url!r}")
