"""The ports stay small: a second backend must be writable in a day."""

from __future__ import annotations

import inspect
from typing import Protocol

import cacheback.core._ports as ports
import cacheback.core._store_ports as store_ports

MAX_MEMBERS = 10


def _protocols() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in (ports, store_ports):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and Protocol in obj.__mro__[1:]:
                found[name] = obj
    return found


def _members(proto: type) -> set[str]:
    # Methods and properties the protocol declares itself (``__len__`` is a real member).
    return {n for n in vars(proto) if not n.startswith("_") or n == "__len__"}


def test_every_port_has_at_most_ten_members() -> None:
    protos = _protocols()
    # The ports the engine and stages are written against, all of them found here.
    assert {"Embedder", "VectorIndex", "LLM", "Entries", "Maintenance", "ChangeFeed"} <= set(protos)
    assert {"Blocklist", "Counters", "Store"} <= set(protos)
    sizes = {name: len(_members(p)) for name, p in protos.items()}
    assert all(n >= 1 for n in sizes.values()), sizes
    assert max(sizes.values()) <= MAX_MEMBERS, sizes
