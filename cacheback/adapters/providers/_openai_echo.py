"""Request parameters an OpenAI response echoes that must come from the caller, never
from whoever caused the cached answer (they may identify that other caller)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

# The value is what the Responses API echoes when the request leaves the parameter out.
ECHOED_PER_CALLER: dict[str, Any] = {
    "metadata": {},
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "store": True,
    "background": False,  # background=True requests are never cached
}


def caller_value(request: Mapping[str, Any] | None, key: str) -> Any:
    """The caller's own value of an echoed parameter (None: not given)."""
    value = request.get(key) if request is not None else None
    # SDK sentinels (NOT_GIVEN, omit) and anything that is not JSON count as not given.
    return value if isinstance(value, str | bool | int | float | dict) else None


_ECHOED = frozenset(ECHOED_PER_CALLER)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def echo_key(request: Mapping[str, Any] | None) -> str | None:
    """The caller's values of the echoed parameters as one string: all a replayed response
    takes from the request ("" when it gives none; None when one is not JSON)."""
    if request is None or _ECHOED.isdisjoint(request):  # the common case, at C speed
        return ""
    values = [caller_value(request, key) for key in ECHOED_PER_CALLER]
    if all(v is None for v in values):
        return ""
    try:
        return _ENCODE(values)
    except (TypeError, ValueError):
        return None


def reset_echoed(data: dict[str, Any], request: Mapping[str, Any] | None) -> None:
    """Chat completions echo none of these today; whatever a payload carries is reset."""
    for key in ECHOED_PER_CALLER:
        if key in data:
            data[key] = caller_value(request, key)


def echo_as_responses(data: dict[str, Any], request: Mapping[str, Any] | None) -> None:
    """As the Responses API echoes them for this request: the caller's value, else the
    API's default (``store`` true, ``metadata`` empty, ``background`` false). A field whose
    default is null is left out when the stored response left it out, so the rebuilt
    object's set fields (``to_dict()``, ``exclude_unset``) stay the provider's."""
    for key, default in ECHOED_PER_CALLER.items():
        value = caller_value(request, key)
        if value is not None:
            data[key] = value
        elif default is not None or key in data:
            data[key] = copy.deepcopy(default)
