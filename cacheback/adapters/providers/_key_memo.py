"""The keys of recent requests, so that a repeat is not canonicalised and hashed again.

Keying a request (``Codec.key``) canonicalises every parameter, serialises them as sorted
JSON and hashes that: about 65 µs for a one-message chat request on a slow CPU, a fifth of
an exact hit. A request's key depends only on its parameters' values (and the client's
``ignore_params``), so the key of a repeat is looked up by a fingerprint of those values:
one walk that builds a tuple of them, each number tagged with its type (``1``, ``1.0``
and ``True`` are equal in Python but not the same request). A fingerprint is only made of
plain values (str, int, float, bool, None, and dicts with str keys, lists and tuples of
them); a request holding anything else (SDK models, sentinels, bytes, iterators), or more
than ``MAX_REQUEST_CHARS`` of text, or media in its question, is keyed every time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ._bounded_lru import BoundedLru
from ._codec import Codec
from ._scope import RequestKey

#: Keys kept at most, the text their fingerprints hold in all, and the text one request may
#: hold to be kept: repeats are short questions, and a long prompt is not kept twice.
MAX_KEYS = 1024
MAX_KEPT_CHARS = 4 * 1024 * 1024
MAX_REQUEST_CHARS = 16 * 1024


class _Unfit(Exception):
    """A value a fingerprint cannot be made of (or too much text)."""


def fingerprint(params: Mapping[str, Any]) -> tuple[tuple[Any, ...], int] | None:
    """A hashable value equal for requests with equal parameters (in the same order), and
    the characters of text it holds; None when the request cannot have one."""
    size = [0]
    try:
        return _dict(params, size), size[0]
    except (_Unfit, RecursionError):
        return None


def _value(value: Any, size: list[int]) -> Any:
    kind = type(value)
    if kind is str:
        size[0] += len(value)
        if size[0] > MAX_REQUEST_CHARS:
            raise _Unfit
        return value  # a str is never equal to a tuple or None: no tag needed
    if value is None:
        return None
    if kind is int or kind is float or kind is bool:
        return (kind, value)
    if kind is dict:
        return _dict(value, size)
    if kind is list or kind is tuple:
        return (kind, *[_value(v, size) for v in value])
    raise _Unfit


def _dict(value: Mapping[str, Any], size: list[int]) -> tuple[Any, ...]:
    if type(value) is not dict:
        raise _Unfit
    out: list[Any] = [dict]
    for k, v in value.items():
        if type(k) is not str:
            raise _Unfit
        size[0] += len(k)
        out.append(k)
        out.append(_value(v, size))
    return tuple(out)


class KeyMemo:
    """``key(codec, params, ignore_params)``: ``codec.key(params, ignore_params=...)``, or
    the key an equal request got before (a key is a function of these three alone, so one
    memo serves every client). Thread-safe (sync clients key on their callers' threads)."""

    def __init__(self, max_keys: int = MAX_KEYS, max_chars: int = MAX_KEPT_CHARS) -> None:
        self.kept: BoundedLru[RequestKey] = BoundedLru(max_keys, max_chars)

    def key(self, codec: Codec, params: Mapping[str, Any], ignore_params: Iterable[str] = ()) -> RequestKey:
        ignored = tuple(ignore_params)
        found = fingerprint(params)
        if found is None:
            return codec.key(params, ignore_params=ignored)
        values, chars = found
        memo_key = (codec.label, ignored, values)
        kept = self.kept.get(memo_key)
        if kept is not None:
            return kept
        key = codec.key(params, ignore_params=ignored)
        if not key.media:  # a question with media is not kept (its parts hold the bytes)
            self.kept.put(memo_key, key, chars)
        return key

    def __len__(self) -> int:
        return len(self.kept)


#: The keys of the recent requests of every client in this process.
KEYS = KeyMemo()
os.register_at_fork(after_in_child=KEYS.kept.forked)
