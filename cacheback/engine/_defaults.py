"""What the engine builds when it is not given a part: injected from above.

The engine knows no concrete store, embedder or model client; the package installs the
embedded ones when it is imported (``cacheback/__init__.py``), and an engine may be given
its own ``Defaults``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core._embedder_status import NoEmbedder
from ..core._errors import ConfigError
from ..core._ports import LLM, Embedder, Store
from ..core._settings import Settings


@dataclass(frozen=True, slots=True)
class Defaults:
    # run on a worker thread (it may load a model); NoEmbedder says why none can run
    embedder: Callable[[Settings], Embedder | NoEmbedder | None]
    store: Callable[[Settings, int], Store]  # settings, vector dimension
    llm: Callable[[Settings], LLM | None]  # the cheap model for synthesis, if configured


_installed: Defaults | None = None


def install_defaults(defaults: Defaults) -> None:
    global _installed
    _installed = defaults


def installed_defaults() -> Defaults:
    if _installed is None:
        raise ConfigError("no default store or embedder installed: pass store= and embedder=")
    return _installed
