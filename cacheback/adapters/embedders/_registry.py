"""Embedder factories by name, imported only when first used.

Built in: ``minilm`` (text, the default), ``clip`` (images) and ``whisper`` (audio).
Anything else can
be registered: ``register("mine", MyEmbedder)`` or, to keep the import lazy,
``register("mine", "my_package.embed:MyEmbedder")``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cacheback._logging import get_logger
from cacheback.core._embedder_status import NoEmbedder
from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._ports import Embedder, MediaEmbedder, is_media_embedder

__all__ = [
    "EmbedderFactory",
    "available",
    "choose_default_embedder",
    "create",
    "create_media",
    "load_default_embedder",
    "register",
    "unregister",
]

EmbedderFactory = Callable[..., Embedder]  # media embedders register the same way (embed_media)

_log = get_logger("cacheback.embedder")
_lock = threading.Lock()
# A value is a factory or a "module:attribute" string resolved on first create().
_factories: dict[str, EmbedderFactory | str] = {
    "minilm": "cacheback.adapters.embedders._minilm:MiniLMEmbedder",
    "clip": "cacheback.adapters.embedders._clip:ClipImageEmbedder",
    "whisper": "cacheback.adapters.embedders._whisper:WhisperAudioEmbedder",
}


def register(name: str, factory: EmbedderFactory | str, *, replace: bool = False) -> None:
    """Make ``create(name, ...)`` call ``factory`` (a callable or ``"module:attribute"``)."""
    if not name:
        raise ConfigError("an embedder needs a name")
    if isinstance(factory, str) and factory.count(":") != 1:
        raise ConfigError(f"lazy embedder factory {factory!r} must look like 'module:attribute'")
    with _lock:
        if name in _factories and not replace:
            raise ConfigError(f"embedder {name!r} is already registered (pass replace=True)")
        _factories[name] = factory


def unregister(name: str) -> None:
    with _lock:
        _factories.pop(name, None)


def available() -> list[str]:
    """The registered names (registered, not necessarily loadable here)."""
    with _lock:
        return sorted(_factories)


def create(name: str, **kwargs: Any) -> Embedder:
    """Build the embedder registered as ``name`` with ``kwargs``."""
    factory = _resolve(name)
    embedder = factory(**kwargs)
    if not isinstance(embedder, Embedder):
        raise ConfigError(f"the factory of embedder {name!r} did not return an Embedder")
    return embedder


def create_media(name: str, **kwargs: Any) -> MediaEmbedder:
    """Build the image or audio embedder registered as ``name`` with ``kwargs``."""
    embedder: object = _resolve(name)(**kwargs)
    if not is_media_embedder(embedder):
        raise ConfigError(f"the factory of embedder {name!r} did not return a MediaEmbedder (embed_media)")
    return embedder


def _resolve(name: str) -> EmbedderFactory:
    with _lock:
        entry = _factories.get(name)
    if entry is None:
        raise ConfigError(f"unknown embedder {name!r}; registered: {', '.join(available())}")
    if not isinstance(entry, str):
        return entry
    module_name, _, attr = entry.partition(":")
    try:
        factory: EmbedderFactory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EmbedderError(f"embedder {name!r} could not be imported from {entry}: {exc}") from exc
    with _lock:
        if _factories.get(name) == entry:  # unless re-registered meanwhile
            _factories[name] = factory
    return factory


def load_default_embedder(
    settings: object | None = None,
    /,
    *,
    embedder: str | None = None,
    model_dir: Path | str | None = None,
    intra_op_threads: int | None = None,
    compute: str | None = None,
    device: str | None = None,
    keep_warm_ms: float | None = None,
    keep_warm_for_s: float | None = None,
    model_cache: Path | str | None = "auto",
    load: bool = False,
) -> Embedder | None:
    """The configured embedder, or None (with a warning) when it cannot run here: see
    ``choose_default_embedder``, which says why instead of None."""
    chosen = choose_default_embedder(
        settings,
        embedder=embedder,
        model_dir=model_dir,
        intra_op_threads=intra_op_threads,
        compute=compute,
        device=device,
        keep_warm_ms=keep_warm_ms,
        keep_warm_for_s=keep_warm_for_s,
        model_cache=model_cache,
        load=load,
    )
    return None if isinstance(chosen, NoEmbedder) else chosen


def choose_default_embedder(
    settings: object | None = None,
    /,
    *,
    embedder: str | None = None,
    model_dir: Path | str | None = None,
    intra_op_threads: int | None = None,
    compute: str | None = None,
    device: str | None = None,
    keep_warm_ms: float | None = None,
    keep_warm_for_s: float | None = None,
    model_cache: Path | str | None = "auto",
    load: bool = False,
) -> Embedder | NoEmbedder:
    """The configured embedder, or ``NoEmbedder(reason)`` (with a warning) when it cannot
    run here (the reason goes to stats and ``/health``).

    Values come from ``settings`` (anything with ``embedder``, ``model_dir`` and
    ``intra_op_threads`` attributes, such as engine Settings), overridden by
    the keyword arguments. ``load=True`` also loads the model now, so a corrupt
    file is found at start-up rather than on the first query. When onnxruntime cannot
    be imported or cannot load it, ``minilm`` runs in NumPy instead (``_numpy_minilm``,
    same weights and vectors; ``describe()`` gives the reason). No embedder means the
    engine runs exact-match only; an unknown embedder name still raises
    ConfigError, since that is a mistake rather than a missing capability.
    The factory is called with the keywords ``model_dir`` (None: its default
    location) and ``intra_op_threads``; the built-in ``minilm`` also gets ``compute``
    (settings ``embed_compute``), ``device`` (``embed_device``; asking for a GPU that
    onnxruntime cannot use is a ConfigError, not a fallback), ``keep_warm_ms`` and
    ``keep_warm_for_s`` (``embed_keep_warm_*``: the idle keep-warm) and ``model_cache`` (where
    its int8 model file is kept).
    """
    name = embedder if embedder is not None else getattr(settings, "embedder", "minilm")
    if model_dir is None:
        model_dir = getattr(settings, "model_dir", None)
    if intra_op_threads is None:
        intra_op_threads = getattr(settings, "intra_op_threads", 2)
    if compute is None:
        compute = getattr(settings, "embed_compute", "auto")
    if device is None:
        device = getattr(settings, "embed_device", "cpu")
    from ._minilm import KEEP_WARM_FOR_S, KEEP_WARM_MS, MiniLMEmbedder

    if keep_warm_ms is None:
        keep_warm_ms = getattr(settings, "embed_keep_warm_ms", KEEP_WARM_MS)
    if keep_warm_for_s is None:
        keep_warm_for_s = getattr(settings, "embed_keep_warm_for_s", KEEP_WARM_FOR_S)
    factory = _resolve(str(name))

    extra: dict[str, Any] = {}
    if factory is MiniLMEmbedder:
        extra = {
            "compute": compute,
            "model_cache": model_cache,
            "device": device,
            "keep_warm_ms": keep_warm_ms,
            "keep_warm_for_s": keep_warm_for_s,
        }
    try:
        import onnxruntime  # noqa: F401  (only probing that it imports)
    except Exception as exc:  # ImportError, or a native library that fails to load
        reason = f"onnxruntime not importable: {type(exc).__name__}: {exc}"
        if factory is MiniLMEmbedder:
            return _numpy_fallback(model_dir, reason, load=load)
        _log.warning("embedder_unavailable", embedder=name, reason=reason, fallback="exact-match only")
        return NoEmbedder(f"{name}: {reason}")
    try:
        instance = factory(
            model_dir=Path(model_dir).expanduser() if model_dir is not None else None,
            intra_op_threads=intra_op_threads,
            **extra,
        )
        if load:
            loader = getattr(instance, "load", None)
            if callable(loader):
                loader()
            else:
                instance.embed(["warm-up"])
    except EmbedderError as exc:
        # e.g. onnxruntime fails to load the model; missing model files the NumPy fallback
        # would miss just the same, so they are the reason as they are
        if factory is MiniLMEmbedder and not isinstance(exc, ModelNotFound):
            return _numpy_fallback(model_dir, f"onnxruntime failed: {exc}", load=load)
        _log.warning(
            "embedder_unavailable",
            embedder=name,
            reason=str(exc),
            error=type(exc).__name__,
            fallback="exact-match only",
        )
        return NoEmbedder(f"{name}: {type(exc).__name__}: {exc}")
    if not isinstance(instance, Embedder):
        raise ConfigError(f"the factory of embedder {name!r} did not return an Embedder")
    return instance


def _numpy_fallback(model_dir: Path | str | None, reason: str, *, load: bool) -> Embedder | NoEmbedder:
    """The MiniLM forward pass in NumPy (same weights and vectors), or None if that fails too."""
    from ._numpy_minilm import NumpyMiniLMEmbedder

    try:
        instance = NumpyMiniLMEmbedder(
            Path(model_dir).expanduser() if model_dir is not None else None, reason=reason
        )
        if load:
            instance.load()
    except EmbedderError as exc:
        both = f"{reason}; the NumPy fallback failed too: {exc}"
        _log.warning("embedder_unavailable", embedder="minilm", reason=both, fallback="exact-match only")
        return NoEmbedder(f"minilm: {both}")
    _log.warning("embedder_fallback", embedder="minilm", runtime="numpy", reason=reason)
    return instance
