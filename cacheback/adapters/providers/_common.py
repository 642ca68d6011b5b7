"""Shared pieces of the provider codecs: answer records, verdicts, marks, canonical JSON.

Nothing here imports a provider SDK, so the scope rules work with either SDK (or none).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, get_args

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What the cache stores for one answer: its text (matched and synthesised from) and
    the full provider response as JSON (replayed on a hit)."""

    text: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a provider response may be cached, and why not."""

    ok: bool
    reason: str = "ok"

    def __bool__(self) -> bool:
        return self.ok


OK = Verdict(True)


def reject(reason: str) -> Verdict:
    return Verdict(False, reason)


class StreamAccumulator(Protocol):
    """Sees the chunks/events of a streamed miss as they pass through to the caller."""

    @property
    def text(self) -> str:
        """The answer text streamed so far."""
        ...

    def feed(self, event: object) -> None: ...

    def fail(self, reason: str) -> None:
        """The stream broke (an exception while iterating): nothing will be cached."""
        ...

    def finish(self) -> tuple[CachedAnswer | None, Verdict]:
        """The answer to cache (``None`` when not cacheable) and the verdict."""
        ...


# --- marks on SDK objects -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachebackInfo:
    """The small record set as ``obj.cacheback`` on every response and stream."""

    hit: bool
    synthesized: bool
    tier: str | None = None
    similarity: float | None = None
    entry_id: int | None = None
    latency_ms: float | None = None
    reason: str | None = None
    modality: str = "text"  # what the question carried: text, image, audio, audio+image
    extra: dict[str, Any] = field(default_factory=dict)  # a dict: copyable and picklable

    def as_dict(self) -> dict[str, Any]:
        return {
            "hit": self.hit,
            "synthesized": self.synthesized,
            "tier": self.tier,
            "similarity": self.similarity,
            "entry_id": self.entry_id,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "modality": self.modality,
            **self.extra,
        }


_INFO_FIELDS = ("tier", "similarity", "entry_id", "latency_ms", "reason", "modality")


def mark(obj: _T, hit: bool, synthesized: bool, info: Mapping[str, Any] | None = None) -> _T:
    """Set ``cacheback_hit``, ``cacheback_synthesized`` and ``cacheback`` on ``obj``.

    SDK models are pydantic models with ``extra="allow"``: a plain ``setattr`` would put
    the marks into ``__pydantic_extra__`` and so into ``model_dump()``/``to_json()``
    (and into the bytes the proxy or the cache writes back out). ``object.__setattr__``
    stores them in the instance ``__dict__`` instead, which pydantic does not serialise,
    and which survives ``copy``/``pickle``. Plain objects (streams) take a normal setattr.
    """
    data = dict(info or {})
    record = CachebackInfo(
        hit=hit,
        synthesized=synthesized,
        **{k: data.pop(k) for k in _INFO_FIELDS if k in data},
        extra=data,
    )
    setter = object.__setattr__ if _is_pydantic(obj) else setattr
    setter(obj, "cacheback_hit", hit)
    setter(obj, "cacheback_synthesized", synthesized)
    setter(obj, "cacheback", record)
    return obj


def _is_pydantic(obj: object) -> bool:
    # Duck-typed so this module needs neither pydantic nor an SDK at import time.
    return hasattr(obj, "__pydantic_fields_set__")


# --- reading wire dicts and SDK objects alike ------------------------------------------


def get(obj: object, key: str, default: Any = None) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for SDK objects (cheap: no model_dump)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def to_wire(obj: object) -> Any:
    """An SDK model (or a mapping of them) as the JSON-able dict the API sent."""
    kind = type(obj)
    if kind is str or kind is int or kind is bool or kind is float or obj is None:
        return obj  # the common leaves first: they have nothing to dump
    if kind is dict:
        return {k: to_wire(v) for k, v in obj.items()}  # type: ignore[attr-defined]
    dump = getattr(obj, "model_dump", None)
    if dump is not None and _is_pydantic(obj):
        # warnings=False: models built with construct() may hold values pydantic's
        # serializer would warn about, and tests run with warnings as errors.
        return dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
    if isinstance(obj, Mapping):
        return {k: to_wire(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_wire(v) for v in obj]
    return obj


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def payload_bytes(response: object) -> bytes:
    return dumps(to_wire(response))


def load_payload(payload: bytes | None) -> dict[str, Any] | None:
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _count(value: Any) -> int | None:
    """A token count as an int (None when absent or not a number: a malformed usage
    block costs the accounting a figure, never the request)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def token_usage(response: object, input_field: str, output_field: str) -> dict[str, Any]:
    """The engine's usage record (``input_tokens``, ``output_tokens``, ``model``) from a
    response, a chunk or an event (SDK object or wire dict), with only the fields it
    carries: stream events report usage piecemeal and are merged in order."""
    record: dict[str, Any] = {}
    model = get(response, "model")
    if isinstance(model, str) and model:
        record["model"] = model
    usage = get(response, "usage")
    if usage is None:
        return record
    for name, field_name in (("input_tokens", input_field), ("output_tokens", output_field)):
        count = _count(get(usage, field_name))
        if count is not None:
            record[name] = count
    return record


# --- canonical JSON for scope keys ------------------------------------------------------


class Unkeyable(TypeError):
    """A request value that cannot be put into a scope key (the request is not cached)."""


def _is_sentinel(value: object) -> bool:
    # The SDKs' NOT_GIVEN / omit markers mean "absent"; matched by name so that this
    # module depends on neither SDK.
    return type(value).__name__ in ("NotGiven", "Omit")


def canonical(value: Any) -> Any:
    """Normalise a request value so that equivalent spellings compare equal.

    Drops absent values (``None``, SDK sentinels, empty containers: the APIs treat them
    as "not set"), turns SDK models into their wire dicts, tuples into lists and
    integral floats into ints (``temperature=1`` and ``1.0`` are the same request).
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # the common cases first (same rules)
        return value
    if kind is dict:
        return _canonical_mapping(value)
    if value is None or _is_sentinel(value):
        return None
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Unkeyable(f"non-finite float {value!r}")
        return int(value) if value.is_integer() else value
    if _is_pydantic(value):
        return canonical(to_wire(value))
    if isinstance(value, Mapping):
        return _canonical_mapping(value)
    if isinstance(value, list | tuple):
        items = [canonical(v) for v in value]
        return items or None
    if isinstance(value, bytes):
        # Raw bytes (e.g. file uploads) are keyed by content hash, not inlined.
        return {"$bytes": hashlib.blake2b(value, digest_size=16).hexdigest()}
    raise Unkeyable(f"cannot key a value of type {type(value).__name__}")


def _canonical_mapping(value: Mapping[Any, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise Unkeyable(f"non-string key {k!r}")
        c = canonical(v)
        if c is not None:
            out[k] = c
    return out or None


def canonical_json(value: Any) -> str:
    return json.dumps(
        canonical(value),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# --- ids, timestamps, text chunking, SSE ------------------------------------------------


# Whether the current thread drew a fresh id or timestamp (``drawing_fresh``).
_DRAWS = threading.local()


def new_id(prefix: str) -> str:
    """A fresh response id in the provider's style, for an answer no provider response
    stands behind (a synthesised one). A replayed provider response keeps its own id: the
    caller may chain or retrieve by it, and only the provider's ids work there."""
    _DRAWS.fresh = True
    return prefix + secrets.token_hex(12)


def no_request(obj: _T, *names: str) -> _T:
    """Set the SDK's per-request attributes (``_request_id``, ...) to None on ``obj``.

    The SDKs set ``_request_id`` on every response they parse, from the HTTP headers; an
    answer from the cache was made without a request, so it has none (rather than no such
    attribute at all, which would raise on ``resp._request_id``).
    """
    for name in names or ("_request_id",):
        setattr(obj, name, None)  # as the SDKs set it: kept out of model_dump()
    return obj


def now() -> int:
    """The time for a response made now (a fresh timestamp, as ``new_id`` is a fresh id)."""
    _DRAWS.fresh = True
    return int(time.time())


def drawing_fresh(make: Callable[[], _T]) -> tuple[_T, bool]:
    """``make()``, and whether it drew a fresh id or timestamp (``new_id``, ``now``) on this
    thread: if not, what it built is a function of its arguments alone (_construct_memo)."""
    _DRAWS.fresh = False
    value = make()
    fresh = bool(_DRAWS.fresh)
    _DRAWS.fresh = False
    return value, fresh


_PIECES = re.compile(r"\S+\s*|\s+")


def split_text(text: str, chunk_chars: int = 24) -> list[str]:
    """Split ``text`` into word-aligned pieces of about ``chunk_chars`` characters.

    The pieces concatenate back to ``text`` exactly. Live streams send about one token
    per event; a few words per event keeps a replay looking live while keeping the
    event count (and so the SDK's per-event parsing cost) low.
    """
    if not text:
        return []
    pieces: list[str] = []
    buf = ""
    for m in _PIECES.finditer(text):
        buf += m.group(0)
        if len(buf) >= chunk_chars:
            pieces.append(buf)
            buf = ""
    if buf:
        pieces.append(buf)
    return pieces


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    body = data if isinstance(data, str) else dumps(data).decode("utf-8")
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


def discriminator_table(union: Any) -> dict[str, Any]:
    """``type`` literal → model class, for an SDK ``Annotated[Union[...], discriminator]``
    (what the SDK itself resolves when it parses one event off the wire)."""
    members = get_args(get_args(union)[0])
    return {literal: cls for cls in members for literal in get_args(cls.model_fields["type"].annotation)}
