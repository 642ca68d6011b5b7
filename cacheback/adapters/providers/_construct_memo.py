"""SDK response objects for replayed hits, built once per distinct replay and copied after.

The SDKs build a response with ``construct()``, which walks the type hints of every field
of every nested model: about 0.1 ms for a small chat completion (0.4 ms on a slow CPU),
most of an exact hit's cost. A stored response replayed with its ids (a hit) is the same
object every time, so the object built the first time is kept as a template and each hit
gets a copy of it. The template is kept under the replay's inputs (the stored answer, its
payload, the requested model, the caller's echoed parameters), so a repeat neither parses
the payload nor builds its wire dict again; a rebuild that drew a fresh id or timestamp
(``_common.drawing_fresh``) is not a function of its inputs and is never kept.

The copy is what ``construct()`` would have built: the same classes, field values, extras
and set fields; nothing is validated or coerced. Each caller gets objects of its own, so
mutating a hit never changes the next one. The copy is made by a copier compiled from the
template's shape once (``copier``): a function per nested model, list and dict, so a hit
does not inspect every value's type again.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from ._bounded_lru import BoundedLru
from ._common import drawing_fresh

_T = TypeVar("_T")

#: Templates kept at most, and their inputs' total size: the most recent hits stay.
MAX_TEMPLATES = 256
MAX_TEMPLATE_BYTES = 8 * 1024 * 1024

_ATOMS = frozenset({str, int, float, bool, type(None)})

Copier = Callable[[Any], Any]


def fresh_copy(value: Any) -> Any:
    """A deep copy of a constructed SDK object (pydantic models, lists, dicts, JSON atoms),
    without pydantic's ``__deepcopy__`` bookkeeping; anything else goes to ``copy.deepcopy``.
    Atoms are shared (immutable)."""
    make = copier(value)
    return value if make is None else make(value)


def copier(value: Any) -> Copier | None:
    """A function that deep-copies ``value`` and values of exactly its shape, as
    ``fresh_copy`` does (None: an atom, shared as it is). Compiled once per template."""
    kind: Any = type(value)
    if kind in _ATOMS:
        return None
    if kind is list:
        return _list_copier([copier(v) for v in value])
    if kind is dict:
        return _dict_copier({k: copier(v) for k, v in value.items()})
    if getattr(value, "__pydantic_fields_set__", None) is not None:
        return _model_copier(kind, value)
    return copy.deepcopy


def _list_copier(items: list[Copier | None]) -> Copier:
    if all(c is None for c in items):
        return list.copy
    plan = list(enumerate(items))

    def copy_list(value: list[Any]) -> list[Any]:
        return [value[i] if c is None else c(value[i]) for i, c in plan]

    return copy_list


def _dict_copier(values: dict[str, Copier | None]) -> Copier:
    nested = [(k, c) for k, c in values.items() if c is not None]
    if not nested:
        return dict.copy

    def copy_dict(value: dict[str, Any]) -> dict[str, Any]:
        new = value.copy()  # the atoms, in their order
        for k, c in nested:
            new[k] = c(value[k])
        return new

    return copy_dict


def _model_copier(kind: Any, template: Any) -> Copier:
    fields = copier(template.__dict__) or dict.copy
    extra = template.__pydantic_extra__
    private = template.__pydantic_private__
    copy_extra = None if extra is None else copier(extra) or dict.copy
    copy_private = None if private is None else copier(private) or dict.copy
    new_object = kind.__new__
    setter = object.__setattr__

    def copy_model(value: Any) -> Any:
        new = new_object(kind)
        setter(new, "__dict__", fields(value.__dict__))
        extra = value.__pydantic_extra__
        private = value.__pydantic_private__
        setter(new, "__pydantic_extra__", None if copy_extra is None else copy_extra(extra))
        setter(new, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
        setter(new, "__pydantic_private__", None if copy_private is None else copy_private(private))
        return new

    return copy_model


class ConstructMemo:
    """``replay(construct, inputs, make)``: ``construct(**make())``, or a copy of the object
    the same ``inputs`` built before. Thread-safe (sync clients build on their callers'
    threads)."""

    def __init__(self, max_items: int = MAX_TEMPLATES, max_bytes: int = MAX_TEMPLATE_BYTES) -> None:
        self.kept: BoundedLru[tuple[Any, Copier]] = BoundedLru(max_items, max_bytes)

    def replay(
        self,
        construct: Callable[..., _T],
        inputs: Hashable | None,
        make: Callable[[], Mapping[str, Any]],
        *,
        size: int = 0,
    ) -> _T:
        """``inputs`` must determine ``make()``'s result whenever it draws nothing fresh
        (None: never kept); ``size`` is about how many bytes they hold."""
        if inputs is None:
            return construct(**make())
        key = (construct, inputs)
        kept = self.kept.get(key)
        if kept is None:
            data, fresh = drawing_fresh(make)
            built = construct(**data)
            if not fresh:  # else new ids or timestamps: this object is one of a kind
                # The template is a copy of its own: ``built`` may hold the caller's
                # values (an echoed ``metadata`` dict), which the caller may change later.
                copy_built = copier(built) or copy.deepcopy
                self.kept.put(key, (copy_built(built), copy_built), size)
            return built
        template, copy_template = kept
        copied: _T = copy_template(template)
        return copied

    def __len__(self) -> int:
        return len(self.kept)


#: The templates of the replayed hits of every client in this process.
REPLAYS = ConstructMemo()
os.register_at_fork(after_in_child=REPLAYS.kept.forked)
