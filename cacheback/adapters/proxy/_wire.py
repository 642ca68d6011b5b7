"""Bodies as bytes: compact JSON (the codecs' ``dumps``) and a ``Response`` with the
proxy's headers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from ..providers._common import dumps
from ._upstream import encode_headers

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"

__all__ = ["JSON", "SSE", "dumps", "response", "safe_json"]


def safe_json(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_json(v) for v in value]
    return value


def response(
    status: int, body: bytes, headers: Sequence[tuple[str, str]] = (), media_type: str = JSON
) -> Response:
    """``body`` with ``headers`` as given; ``media_type`` only if they carry no content-type."""
    resp = Response(body, status_code=status)
    has_type = False
    extra: list[tuple[str, str]] = []
    for k, v in headers:
        if k.lower() == "content-type":
            has_type = True
        extra.append((k, v))
    if not has_type:
        extra.append(("content-type", media_type))
    resp.raw_headers.extend(encode_headers(extra))
    return resp
