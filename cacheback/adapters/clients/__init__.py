"""The drop-in SDK clients. Each SDK is imported only when its client is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._anthropic import AsyncCachedAnthropic, CachedAnthropic
    from ._openai import AsyncCachedOpenAI, CachedOpenAI

_WHERE = {
    "CachedOpenAI": ("._openai", "openai"),
    "AsyncCachedOpenAI": ("._openai", "openai"),
    "CachedAnthropic": ("._anthropic", "anthropic"),
    "AsyncCachedAnthropic": ("._anthropic", "anthropic"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    module, extra = _WHERE[name]
    import importlib

    try:
        mod = importlib.import_module(module, __name__)
    except ModuleNotFoundError as exc:
        if exc.name == extra:
            raise ImportError(f"{name} needs the {extra} SDK: pip install 'cacheback-ai[{extra}]'") from exc
        raise
    return getattr(mod, name)


__all__ = ["AsyncCachedAnthropic", "AsyncCachedOpenAI", "CachedAnthropic", "CachedOpenAI"]
