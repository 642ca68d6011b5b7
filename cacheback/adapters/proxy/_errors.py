"""Errors in each provider's own format, so SDKs raise their usual exception classes.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Literal

Provider = Literal["openai", "anthropic"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


def provider_for(path: str, headers: Mapping[str, str]) -> Provider:
    """Whose API a request outside the cached endpoints speaks (for its errors and upstream)."""
    if path.startswith(("/v1/messages", "/v1/complete")) or "anthropic-version" in headers:
        return "anthropic"
    return "openai"


class ProxyError(Exception):
    """An error the proxy answers itself (never cached, never sent upstream)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind

    def body(self, provider: Provider) -> bytes:
        return error_body(
            provider, self.status, self.message, code=self.code, param=self.param, kind=self.kind
        )


def error_body(
    provider: Provider,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    kind: str | None = None,
) -> bytes:
    if provider == "anthropic":
        payload: object = {
            "type": "error",
            "error": {"type": kind or _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
        }
    else:
        payload = {
            "error": {
                "message": message,
                "type": kind or _OPENAI_TYPES.get(status, "server_error"),
                "param": param,
                "code": code,
            }
        }
    return json.dumps(payload, separators=(",", ":")).encode()


def stream_error_event(provider: Provider, api: str, message: str, kind: str) -> bytes:
    """An SSE error event for a stream that broke after its 200 was sent: the SDKs raise
    on it (chat: a ``data`` object with ``error``; responses/messages: an ``error`` event)."""
    if provider == "anthropic":
        data: object = {"type": "error", "error": {"type": kind, "message": message}}
        return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"
    if api == "responses":
        data = {"type": "error", "code": kind, "message": message, "param": None, "sequence_number": 0}
        return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"
    data = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


# Provider key shapes (OpenAI sk-..., sk-proj-..., Anthropic sk-ant-...), also masked
# ones like "sk-proj-****abcd" that providers echo in 401 messages.
_KEY_PATTERN = re.compile(rb"sk-[A-Za-z0-9_\-*]{6,}")


def redact(body: bytes, secrets: Iterable[str]) -> bytes:
    """``body`` without any of ``secrets`` or anything shaped like a provider key.

    Upstream error bodies are passed through to callers; in proxy-key mode they could
    otherwise show (a masked part of) the server's own provider key.
    """
    for secret in secrets:
        if secret and len(secret) >= 8:
            body = body.replace(secret.encode(), b"[redacted]")
    return _KEY_PATTERN.sub(b"sk-[redacted]", body)
