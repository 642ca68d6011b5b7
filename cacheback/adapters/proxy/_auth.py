"""Who is calling: proxy-key checks, the tenant, and the credentials sent upstream.

Two modes:

* proxy keys configured: the caller must present one (``Authorization: Bearer`` or
  ``x-api-key``); the provider key stays on the server (``OPENAI_API_KEY`` /
  ``ANTHROPIC_API_KEY``) and is what goes upstream.
* no proxy keys: the caller's own provider credential is forwarded unchanged; a caller
  with none is served with the server's key if one is configured, else refused.

The tenant (the engine namespace) is a one-way hash of the presented credential, so two
keys never share entries or synthesis candidates. Keys themselves are never stored,
logged or echoed: only the hash leaves this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from ._config import ProxyConfig
from ._errors import Provider, ProxyError

_AUTH_HEADERS = ("authorization", "x-api-key", "api-key")
SHARED_TENANT = "shared"
_SERVER_TENANT = "server"


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str  # namespace prefix for everything this caller reads or writes
    upstream_auth: tuple[tuple[str, str], ...]  # headers that authenticate the upstream call


def tenant_of(credential: str) -> str:
    # Stable across processes and restarts (workers share one store), one-way, and
    # domain-separated so the value is useless as a key hash elsewhere.
    digest = hashlib.blake2b(credential.encode(), digest_size=12, person=b"cacheback-tenant").hexdigest()
    return "t" + digest


def presented_credential(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in ("x-api-key", "api-key"):
        key = headers.get(name)
        if key and key.strip():
            return key.strip()
    return None


def is_auth_header(name: str) -> bool:
    return name in _AUTH_HEADERS


class Authenticator:
    def __init__(self, config: ProxyConfig) -> None:
        self._proxy_keys = tuple(k.encode() for k in config.proxy_keys)
        self._server_keys: dict[Provider, str | None] = {
            "openai": config.openai_api_key,
            "anthropic": config.anthropic_api_key,
        }
        self._shared = config.tenant_mode == "shared"
        self._admin_key = config.admin_key.encode() if config.admin_key else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every key this process knows (for scrubbing text that leaves it)."""
        server = tuple(k for k in self._server_keys.values() if k)
        admin = (self._admin_key.decode(),) if self._admin_key else ()
        return server + tuple(k.decode() for k in self._proxy_keys) + admin

    def _is_proxy_key(self, credential: str) -> bool:
        given = credential.encode()
        found = False
        for key in self._proxy_keys:
            # compare_digest against every key: no early exit that times the match.
            found |= hmac.compare_digest(given, key)
        return found

    def authenticate(self, headers: Mapping[str, str], provider: Provider) -> Caller:
        """The caller behind ``headers`` (lower-cased names), or a 401 ProxyError."""
        credential = presented_credential(headers)
        if credential is not None and not credential.isascii():
            # No provider or proxy key has such characters: refused here, not relayed.
            raise ProxyError(401, "Invalid API key: it is not ASCII.", code="invalid_api_key")
        if self._proxy_keys:
            if credential is None:
                raise ProxyError(
                    401, "Missing proxy key: send it as a Bearer token or x-api-key.", code="invalid_api_key"
                )
            if not self._is_proxy_key(credential):
                raise ProxyError(401, "Invalid proxy key.", code="invalid_api_key")
            server = self._server_keys[provider]
            if not server:
                env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
                raise ProxyError(502, f"The proxy has no upstream key for {provider} (set {env}).")
            return Caller(self._tenant(credential), _server_auth(provider, server))
        if credential is not None:
            forwarded = tuple((name, headers[name]) for name in _AUTH_HEADERS if name in headers)
            return Caller(self._tenant(credential), forwarded)
        server = self._server_keys[provider]
        if server:
            return Caller(SHARED_TENANT if self._shared else _SERVER_TENANT, _server_auth(provider, server))
        raise ProxyError(
            401, "Missing API key: send your provider key (Bearer or x-api-key).", code="invalid_api_key"
        )

    def admin(self, headers: Mapping[str, str], *, write: bool) -> None:
        """Let an operator in (the dashboard, the negative cache), or raise a ProxyError.

        The admin key if one is set, else any proxy key. With neither, figures are open as
        ``/v1/cache/stats`` is, and changes are refused: no key would tell an operator apart
        from any caller.
        """
        credential = presented_credential(headers)
        if self._admin_key is None and not self._proxy_keys:
            if write:
                raise ProxyError(
                    403,
                    "Changing the cache from the proxy needs CACHEBACK_ADMIN_KEY (or proxy keys) to be set.",
                    code="admin_key_required",
                    kind="permission_error",
                )
            return
        if credential is None:
            raise ProxyError(401, "Missing admin key: send it as a Bearer token.", code="invalid_api_key")
        if not credential.isascii():
            raise ProxyError(401, "Invalid API key: it is not ASCII.", code="invalid_api_key")
        given = credential.encode()
        if self._admin_key is not None:
            if not hmac.compare_digest(given, self._admin_key):
                raise ProxyError(401, "Invalid admin key.", code="invalid_api_key")
        elif not self._is_proxy_key(credential):
            raise ProxyError(401, "Invalid proxy key.", code="invalid_api_key")

    def _tenant(self, credential: str) -> str:
        return SHARED_TENANT if self._shared else tenant_of(credential)


def _server_auth(provider: Provider, key: str) -> tuple[tuple[str, str], ...]:
    if provider == "anthropic":
        return (("x-api-key", key),)
    return (("authorization", f"Bearer {key}"),)
