"""SDK response objects for replayed hits, built once per distinct response and copied after.

The SDKs build a response with ``construct()``, which walks the type hints of every field
of every nested model: about 0.1 ms for a small chat completion, most of an exact hit's
cost. A stored response replayed with its ids (a hit) gives the same wire dict every time,
so the object built the first time is kept as a template and each hit gets a deep copy of
it (a tenth of the cost). The copy is what ``construct()`` would have built: the same
classes, field values, extras and set fields; nothing is validated or coerced. Each caller
gets objects of its own, so mutating a hit never changes the next one.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Templates kept at most, and their wire dicts' total size: the most recent hits stay.
MAX_TEMPLATES = 256
MAX_TEMPLATE_BYTES = 8 * 1024 * 1024

_ATOMS = frozenset({str, int, float, bool, type(None)})


def fresh_copy(value: Any) -> Any:
    """A deep copy of a constructed SDK object (pydantic models, lists, dicts, JSON atoms),
    without pydantic's ``__deepcopy__`` bookkeeping; anything else goes to ``copy.deepcopy``.
    Atoms are shared (immutable) and tested inline: most values are atoms."""
    kind: Any = type(value)
    if kind in _ATOMS:
        return value
    if kind is list:
        return [v if type(v) in _ATOMS else fresh_copy(v) for v in value]
    if kind is dict:
        return _copy_dict(value)
    fields_set = getattr(value, "__pydantic_fields_set__", None)
    if fields_set is not None:
        new = kind.__new__(kind)
        setter = object.__setattr__
        setter(new, "__dict__", _copy_dict(value.__dict__))
        extra = value.__pydantic_extra__
        setter(new, "__pydantic_extra__", None if extra is None else _copy_dict(extra))
        setter(new, "__pydantic_fields_set__", set(fields_set))
        private = value.__pydantic_private__
        setter(new, "__pydantic_private__", None if private is None else _copy_dict(private))
        return new
    return copy.deepcopy(value)


def _copy_dict(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v if type(v) in _ATOMS else fresh_copy(v) for k, v in value.items()}


class ConstructMemo:
    """``build(construct, data)``: ``construct(**data)``, or a copy of the object an equal
    ``data`` built before. Thread-safe (sync clients build on their callers' threads)."""

    def __init__(self, max_items: int = MAX_TEMPLATES, max_bytes: int = MAX_TEMPLATE_BYTES) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, str], Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def build(self, construct: Callable[..., _T], data: Mapping[str, Any]) -> _T:
        try:
            # The key is the whole wire dict, in order: equal dicts construct equal objects.
            key = (construct, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        except (TypeError, ValueError):  # not plain JSON (a caller's odd metadata): no memo
            return construct(**data)
        with self._lock:
            template = self._items.get(key)
            if template is not None:
                self._items.move_to_end(key)
        if template is None:
            template = construct(**data)
            self._remember(key, template)
        copied: _T = fresh_copy(template)
        return copied

    def _remember(self, key: tuple[Any, str], template: Any) -> None:
        size = len(key[1])
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = template
            self._bytes += size
            while len(self._items) > self._max_items or self._bytes > self._max_bytes:
                old, _ = self._items.popitem(last=False)
                self._bytes -= len(old[1])

    def __len__(self) -> int:
        return len(self._items)

    def _forked(self) -> None:
        # A parent's thread may have held the lock at the fork: the child's must be free.
        self._lock = threading.Lock()


#: The templates of the replayed hits of every client in this process.
REPLAYS = ConstructMemo()
os.register_at_fork(after_in_child=REPLAYS._forked)
