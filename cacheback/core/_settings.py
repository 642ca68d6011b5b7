"""Engine settings: defaults from the product page, overridable by arguments and env.

``Settings`` is a frozen set of sections (``_settings_sections.py``); each part of the
cache reads only its own (the synthesizer ``settings.synthesis``, the store
``settings.storage``, ...). The public surface stays flat: ``Settings(top_k=3)``,
``settings.with_(top_k=3)``, ``settings.top_k`` and ``CACHEBACK_TOP_K`` all name the field
``top_k`` of the ``matching`` section.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import Field, FrozenInstanceError, dataclass, fields, replace
from pathlib import Path
from typing import Any, Generic, Self, TypedDict, TypeVar, Unpack, overload

from ._errors import ConfigError
from ._ports import MediaEmbedder
from ._settings_sections import (
    DEFAULT_CACHE_DIR,
    EMBED_COMPUTE_MODES,
    SECTIONS,
    EmbeddingSettings,
    IndexKind,
    MatchingSettings,
    MediaSettings,
    ObservabilitySettings,
    PipelineSettings,
    StorageSettings,
    SynthesisMode,
    SynthesisSettings,
    default_cache_dir,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "EMBED_COMPUTE_MODES",
    "SECTIONS",
    "EmbeddingSettings",
    "MatchingSettings",
    "MediaSettings",
    "ObservabilitySettings",
    "PipelineSettings",
    "Settings",
    "StorageSettings",
    "SynthesisMode",
    "SynthesisSettings",
    "default_cache_dir",
]

_T = TypeVar("_T")

#: Each flat setting name -> the section that holds it (names are unique across sections).
SECTION_OF: dict[str, str] = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}
_PATHS = ("cache_dir", "model_dir", "image_model_dir", "audio_model_dir")


class FlatSettings(TypedDict, total=False):
    """Every setting by its flat name (``Settings(**values)``, ``with_``, the clients)."""

    cache_dir: Path
    store_url: str | None
    store_timeout_s: float
    write_retry_buffer: int
    index: IndexKind
    namespace: str
    cache_ttl: float
    max_entries: int
    hot_cache_size: int
    similarity_threshold: float
    top_k: int
    guard_enabled: bool
    negative_threshold: float
    negative_false_positive_limit: int
    feedback_margin: float
    feedback_relax_step: float
    feedback_verify_rate: float
    speculative_upstream: bool
    speculation_margin: float | None
    synthesis_mode: SynthesisMode
    synthesis_threshold: float
    synthesis_top_k: int
    synthesis_model: str | None
    synthesis_base_url: str | None
    synthesis_api_key: str | None
    synthesis_timeout_s: float
    synthesis_max_tokens: int
    synthesis_store: bool
    embedder: str
    model_dir: Path | None
    embed_max_batch: int
    embed_max_wait_ms: float
    embed_threads: int
    intra_op_threads: int
    embed_compute: str
    embed_keep_warm_ms: float
    embed_keep_warm_for_s: float
    embed_device: str
    image_embedder: str | MediaEmbedder | None
    image_model_dir: Path | None
    audio_embedder: str | MediaEmbedder | None
    audio_model_dir: Path | None
    media_similarity_threshold: float
    queue_size: int
    persist_batch: int
    persist_interval_s: float
    sweep_interval_s: float
    log_content: bool
    prices: dict[str, Any] | str | None


class SettingsArgs(FlatSettings, total=False):
    """Flat names, and whole sections (flat names given too are applied on top of them)."""

    storage: StorageSettings
    matching: MatchingSettings
    synthesis: SynthesisSettings
    embedding: EmbeddingSettings
    media: MediaSettings
    pipeline: PipelineSettings
    observability: ObservabilitySettings


class _Flat(Generic[_T]):
    """Reads a section's field under its flat name: ``settings.top_k`` is
    ``settings.matching.top_k`` (the public, flat read access)."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[Settings], _T]) -> None:
        self._get = get

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Settings, owner: type[Any]) -> _T: ...
    def __get__(self, obj: Settings | None, owner: type[Any]) -> _T | Self:
        return self if obj is None else self._get(obj)


@dataclass(frozen=True, slots=True, init=False)
class Settings:
    storage: StorageSettings
    matching: MatchingSettings
    synthesis: SynthesisSettings
    embedding: EmbeddingSettings
    media: MediaSettings
    pipeline: PipelineSettings
    observability: ObservabilitySettings

    def __init__(self, **values: Unpack[SettingsArgs]) -> None:
        """Any flat setting by name, or a whole section; unknown names are a ConfigError."""
        given: dict[str, Any] = dict(values)
        unknown = sorted(set(given) - SECTIONS.keys() - SECTION_OF.keys())
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        for section, cls in SECTIONS.items():
            flat = {f.name: given[f.name] for f in fields(cls) if f.name in given}
            base = given.get(section)
            if base is None:
                value = cls(**flat)
            elif not isinstance(base, cls):
                raise ConfigError(f"settings {section} must be a {cls.__name__}, not {type(base).__name__}")
            else:
                value = replace(base, **flat) if flat else base
            object.__setattr__(self, section, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every flat setting name, section by section."""
        return tuple(SECTION_OF)

    @classmethod
    def setting_fields(cls) -> tuple[Field[Any], ...]:
        """The dataclass fields of every section, in the order of ``names()``."""
        return tuple(f for section in SECTIONS.values() for f in fields(section))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CACHEBACK_*`` variables, then explicit overrides (None = unset).
        A whole section given as an override replaces the variables of its fields."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in cls.setting_fields():
            raw = env.get(f"CACHEBACK_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, f.type)
        if "CACHEBACK_TTL" in env:
            values["cache_ttl"] = _coerce("cache_ttl", env["CACHEBACK_TTL"], "float")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        for section in SECTIONS.keys() & explicit.keys():
            values = {k: v for k, v in values.items() if SECTION_OF.get(k) != section}
        values.update(explicit)
        for name in _PATHS:
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser()
        return cls(**values)

    def with_(self, **changes: Unpack[SettingsArgs]) -> Settings:
        """A copy with some settings (flat names or whole sections) changed."""
        current: dict[str, Any] = {section: getattr(self, section) for section in SECTIONS}
        return Settings(**{**current, **changes})

    # -- flat read access (public): every setting under its own name -----------------
    cache_dir = _Flat(lambda s: s.storage.cache_dir)
    store_url = _Flat(lambda s: s.storage.store_url)
    store_timeout_s = _Flat(lambda s: s.storage.store_timeout_s)
    write_retry_buffer = _Flat(lambda s: s.storage.write_retry_buffer)
    index = _Flat(lambda s: s.storage.index)
    namespace = _Flat(lambda s: s.storage.namespace)
    cache_ttl = _Flat(lambda s: s.storage.cache_ttl)
    max_entries = _Flat(lambda s: s.storage.max_entries)
    hot_cache_size = _Flat(lambda s: s.storage.hot_cache_size)
    similarity_threshold = _Flat(lambda s: s.matching.similarity_threshold)
    top_k = _Flat(lambda s: s.matching.top_k)
    guard_enabled = _Flat(lambda s: s.matching.guard_enabled)
    negative_threshold = _Flat(lambda s: s.matching.negative_threshold)
    negative_false_positive_limit = _Flat(lambda s: s.matching.negative_false_positive_limit)
    feedback_margin = _Flat(lambda s: s.matching.feedback_margin)
    feedback_relax_step = _Flat(lambda s: s.matching.feedback_relax_step)
    feedback_verify_rate = _Flat(lambda s: s.matching.feedback_verify_rate)
    speculative_upstream = _Flat(lambda s: s.matching.speculative_upstream)
    speculation_margin = _Flat(lambda s: s.matching.speculation_margin)
    synthesis_mode = _Flat(lambda s: s.synthesis.synthesis_mode)
    synthesis_threshold = _Flat(lambda s: s.synthesis.synthesis_threshold)
    synthesis_top_k = _Flat(lambda s: s.synthesis.synthesis_top_k)
    synthesis_model = _Flat(lambda s: s.synthesis.synthesis_model)
    synthesis_base_url = _Flat(lambda s: s.synthesis.synthesis_base_url)
    synthesis_api_key = _Flat(lambda s: s.synthesis.synthesis_api_key)
    synthesis_timeout_s = _Flat(lambda s: s.synthesis.synthesis_timeout_s)
    synthesis_max_tokens = _Flat(lambda s: s.synthesis.synthesis_max_tokens)
    synthesis_store = _Flat(lambda s: s.synthesis.synthesis_store)
    embedder = _Flat(lambda s: s.embedding.embedder)
    model_dir = _Flat(lambda s: s.embedding.model_dir)
    embed_max_batch = _Flat(lambda s: s.embedding.embed_max_batch)
    embed_max_wait_ms = _Flat(lambda s: s.embedding.embed_max_wait_ms)
    embed_threads = _Flat(lambda s: s.embedding.embed_threads)
    intra_op_threads = _Flat(lambda s: s.embedding.intra_op_threads)
    embed_compute = _Flat(lambda s: s.embedding.embed_compute)
    embed_keep_warm_ms = _Flat(lambda s: s.embedding.embed_keep_warm_ms)
    embed_keep_warm_for_s = _Flat(lambda s: s.embedding.embed_keep_warm_for_s)
    embed_device = _Flat(lambda s: s.embedding.embed_device)
    image_embedder = _Flat(lambda s: s.media.image_embedder)
    image_model_dir = _Flat(lambda s: s.media.image_model_dir)
    audio_embedder = _Flat(lambda s: s.media.audio_embedder)
    audio_model_dir = _Flat(lambda s: s.media.audio_model_dir)
    media_similarity_threshold = _Flat(lambda s: s.media.media_similarity_threshold)
    queue_size = _Flat(lambda s: s.pipeline.queue_size)
    persist_batch = _Flat(lambda s: s.pipeline.persist_batch)
    persist_interval_s = _Flat(lambda s: s.pipeline.persist_interval_s)
    sweep_interval_s = _Flat(lambda s: s.pipeline.sweep_interval_s)
    log_content = _Flat(lambda s: s.observability.log_content)
    prices = _Flat(lambda s: s.observability.prices)


def _refuse(self: Settings, name: str, *value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}: use settings.with_({name}=...)")


# Frozen for the flat names too: the dataclass's own check raises a confusing TypeError for
# them on a slotted class (Python 3.11), so assigning or deleting any attribute says this.
setattr(Settings, "__setattr__", _refuse)  # noqa: B010
setattr(Settings, "__delattr__", _refuse)  # noqa: B010


def _coerce(name: str, raw: str, typ: Any) -> Any:
    t = str(typ)
    try:
        if t.startswith("float"):
            return float(raw)
        if t.startswith("int"):
            return int(raw)
        if t.startswith("bool"):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError as exc:
        raise ConfigError(f"CACHEBACK_{name.upper()}={raw!r} is not a valid {t}") from exc
    return raw
