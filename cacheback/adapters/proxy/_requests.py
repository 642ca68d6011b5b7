"""Reading and checking a request: the body (size-capped), its JSON, the types the cache
relies on, and the ``X-Cacheback-*`` controls. Every refusal is a ``ProxyError``."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request

from ...core._types import has_lone_surrogate
from ..providers import Codec
from ._errors import ProxyError


@dataclass(frozen=True, slots=True)
class Controls:
    """Per-request cache controls, from ``X-Cacheback-*`` headers (never sent upstream)."""

    bypass: bool = False
    no_store: bool = False
    ttl: float | None = None
    namespace: str | None = None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_NS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _flag(headers: Headers, name: str) -> bool:
    raw = headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ProxyError(400, f"{name} must be true or false, not {raw!r}.", code="invalid_cacheback_header")


def parse_controls(headers: Headers) -> Controls:
    ttl: float | None = None
    raw_ttl = headers.get("x-cacheback-ttl")
    if raw_ttl is not None:
        try:
            ttl = float(raw_ttl)
        except ValueError:
            ttl = math.nan
        if not math.isfinite(ttl) or ttl <= 0:
            raise ProxyError(
                400, "X-Cacheback-TTL must be a positive number of seconds.", code="invalid_cacheback_header"
            )
    namespace = headers.get("x-cacheback-namespace")
    if namespace is not None and (not 0 < len(namespace) <= 64 or not set(namespace) <= _NS_CHARS):
        raise ProxyError(
            400,
            "X-Cacheback-Namespace must be 1-64 characters of A-Z a-z 0-9 . _ -",
            code="invalid_cacheback_header",
        )
    return Controls(
        bypass=_flag(headers, "x-cacheback-bypass"),
        no_store=_flag(headers, "x-cacheback-no-store"),
        ttl=ttl,
        namespace=namespace,
    )


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ProxyError(400, "The client went away while sending the body.") from exc
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """The decoded body (None when empty); 400 when it is not JSON."""
    try:
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise ProxyError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None


def _type_name(value: object) -> str:
    if value == "":
        return "an empty string"
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def expect(ok: bool, param: str, expected: str, value: object) -> None:
    """400 in OpenAI's wording for a parameter of the wrong type, unless ``ok``."""
    if not ok:
        raise ProxyError(
            400,
            f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
            code="invalid_type",
            param=param,
        )


_INT_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "top_k", "seed")
_NUM_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def parse_body(raw: bytes, api: Codec) -> dict[str, Any]:
    """The JSON body, with the types the cache relies on checked (400 otherwise)."""
    body = parse_json(raw)
    expect(isinstance(body, dict), "body", "an object", body)
    assert isinstance(body, dict)
    model = body.get("model")
    if model is None:
        raise ProxyError(
            400, "You must provide a model parameter.", code="missing_required_parameter", param="model"
        )
    expect(isinstance(model, str) and bool(model), "model", "a non-empty string", model)
    stream = body.get("stream")
    expect(stream is None or isinstance(stream, bool), "stream", "a boolean", stream)
    for name in _INT_PARAMS:
        v = body.get(name)
        expect(v is None or (isinstance(v, int) and not isinstance(v, bool)), name, "an integer", v)
    for name in _NUM_PARAMS:
        v = body.get(name)
        expect(v is None or (isinstance(v, int | float) and not isinstance(v, bool)), name, "a number", v)
    n = body.get("n")
    if n is not None and n < 1:
        raise ProxyError(
            400,
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead.",
            code="integer_below_min_value",
            param="n",
        )
    modalities = body.get("modalities")
    expect(
        modalities is None or (isinstance(modalities, list) and all(isinstance(m, str) for m in modalities)),
        "modalities",
        "an array of strings",
        modalities,
    )
    _reject_lone_surrogates(raw, body)
    if api.name == "responses":
        value = body.get("input")
        expect(value is None or isinstance(value, str | list), "input", "a string or an array", value)
        return body
    messages = body.get("messages")
    if messages is None:
        raise ProxyError(
            400, "You must provide a messages parameter.", code="missing_required_parameter", param="messages"
        )
    expect(isinstance(messages, list), "messages", "an array", messages)
    for i, message in enumerate(messages):
        expect(isinstance(message, dict), f"messages[{i}]", "an object", message)
        role = message.get("role")
        expect(isinstance(role, str), f"messages[{i}].role", "a string", role)
        content = message.get("content")
        expect(
            content is None or isinstance(content, str | list),
            f"messages[{i}].content",
            "a string or an array",
            content,
        )
    return body


# Only a \uD800-\uDFFF escape can put a surrogate in decoded JSON (raw UTF-8 cannot).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_lone_surrogates(raw: bytes, body: dict[str, Any]) -> None:
    """400 for a string with a lone surrogate: it has no UTF-8 form, so it can be neither
    hashed nor stored (a valid pair was already joined into one character by the decoder)."""
    if not _SURROGATE_ESCAPE.search(raw):
        return
    stack: list[tuple[str, object]] = [("", body)]
    while stack:  # iterative: the nesting depth is the caller's
        where, value = stack.pop()
        bad = False
        if isinstance(value, str):
            bad = has_lone_surrogate(value)
        elif isinstance(value, dict):
            bad = any(has_lone_surrogate(k) for k in value)  # reported at the object's path
            items = [(f"{where}.{k}" if where else k, v) for k, v in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        if bad:
            raise ProxyError(
                400,
                f"invalid Unicode: lone surrogate in {where or 'body'}",
                code="invalid_unicode",
                param=where or None,
            )
