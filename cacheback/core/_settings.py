"""Engine settings: defaults from the product page, overridable by arguments and env."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigError
from ._ports import MediaEmbedder

SynthesisMode = Literal["off", "auto", "always"]
_MODES = ("off", "auto", "always")

DEFAULT_CACHE_DIR = "~/.cacheback"


#: "int8": the packaged model's int8 weights on int8 kernels; "float32": what onnxruntime
#: makes of the model file by itself (docs/storage.md, "Embedding precision").
EMBED_COMPUTE_MODES = ("int8", "float32")
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CACHEBACK_CACHE_DIR", DEFAULT_CACHE_DIR)).expanduser()


@dataclass(frozen=True, slots=True)
class Settings:
    cache_dir: Path = field(default_factory=default_cache_dir)
    # a shared store for many replicas (docs/storage.md): "postgresql://…"; None: the
    # embedded store in cache_dir
    store_url: str | None = field(default=None, repr=False)  # may carry a password
    store_timeout_s: float = 0.25  # budget of one store call on the request path (then a miss)
    namespace: str = "default"
    similarity_threshold: float = 0.92
    synthesis_threshold: float = 0.80
    synthesis_mode: SynthesisMode = "off"
    synthesis_top_k: int = 5
    # synthesis endpoint (docs/synthesis.md): any OpenAI-compatible chat completions API
    synthesis_model: str | None = None
    synthesis_base_url: str | None = None
    synthesis_api_key: str | None = field(default=None, repr=False)  # sent only to synthesis_base_url
    synthesis_timeout_s: float = 10.0  # whole call; for streams, until the first answer tokens
    synthesis_max_tokens: int = 1024
    synthesis_store: bool = False  # store synthesized answers as verbatim entries
    prices: dict[str, Any] | str | None = None  # price overrides, or a JSON file (core/_costs.py)
    cache_ttl: float = 86400.0
    max_entries: int = 100_000
    top_k: int = 5
    guard_enabled: bool = True
    negative_threshold: float = 0.80
    negative_false_positive_limit: int = 5
    # embedder / batching
    embedder: str = "minilm"
    model_dir: Path | None = None
    embed_max_batch: int = 32
    embed_max_wait_ms: float = 2.0
    embed_threads: int = 1  # worker threads running inference at once
    intra_op_threads: int = 2  # onnxruntime threads inside one inference
    embed_compute: str = "int8"  # minilm: int8 kernels over its int8 weights, or "float32"
    embed_keep_warm_ms: float = 0.0  # tiny inference this often while active; 0 = off (no gain measured)
    embed_keep_warm_for_s: float = 10.0  # ... for this long after the last real embedding
    embed_device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (adapters/embedders/_device.py)
    # media (docs/multimodal.md): images and audio are always keyed exactly by their bytes;
    # an embedder per modality adds the semantic media tier
    image_embedder: str | MediaEmbedder | None = None  # "clip", a registered name, or an object
    image_model_dir: Path | None = None
    audio_embedder: str | MediaEmbedder | None = None  # "whisper", a registered name, or an object
    audio_model_dir: Path | None = None
    media_similarity_threshold: float = 0.95
    # pipeline
    queue_size: int = 256
    persist_batch: int = 128
    persist_interval_s: float = 0.005
    sweep_interval_s: float = 300.0
    index: Literal["auto", "hnsw", "numpy"] = "auto"
    log_content: bool = False
    hot_cache_size: int = 50_000

    def __post_init__(self) -> None:
        if not 0.0 < self.similarity_threshold <= 1.0:
            raise ConfigError("similarity_threshold must be in (0, 1]")
        if not 0.0 < self.synthesis_threshold <= 1.0:
            raise ConfigError("synthesis_threshold must be in (0, 1]")
        if self.synthesis_mode not in _MODES:
            raise ConfigError(f"synthesis_mode must be one of {', '.join(_MODES)}")
        if self.synthesis_timeout_s <= 0 or self.synthesis_max_tokens < 1 or self.synthesis_top_k < 1:
            raise ConfigError("synthesis_timeout_s, synthesis_max_tokens and synthesis_top_k must be > 0")
        if not 0.0 < self.media_similarity_threshold <= 1.0:
            raise ConfigError("media_similarity_threshold must be in (0, 1]")
        if self.cache_ttl <= 0:
            raise ConfigError("cache_ttl must be positive (seconds)")
        if self.store_timeout_s <= 0:
            raise ConfigError("store_timeout_s must be positive (seconds)")
        if self.store_url is not None and not self.store_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("store_url must be a postgresql:// URL (or unset for the embedded store)")
        if self.max_entries < 1:
            raise ConfigError("max_entries must be at least 1")
        if self.embed_compute not in EMBED_COMPUTE_MODES:
            raise ConfigError(f"embed_compute must be one of {', '.join(EMBED_COMPUTE_MODES)}")
        if not _DEVICE.fullmatch(self.embed_device.strip().lower()):
            raise ConfigError(
                f"embed_device must be 'cpu', 'cuda', 'cuda:N' or 'auto', not {self.embed_device!r}"
            )
        if self.embed_keep_warm_ms < 0 or self.embed_keep_warm_for_s < 0:
            raise ConfigError("embed_keep_warm_ms and embed_keep_warm_for_s must be >= 0 (0 = off)")
        if self.embed_max_batch < 1 or self.queue_size < 1 or self.top_k < 1:
            raise ConfigError("batch, queue and top_k sizes must be at least 1")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CACHEBACK_*`` variables, then explicit overrides (None = unset)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CACHEBACK_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, f.type)
        if "CACHEBACK_TTL" in env:
            values["cache_ttl"] = _coerce("cache_ttl", env["CACHEBACK_TTL"], "float")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cache_dir" in values:
            values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        for name in ("model_dir", "image_model_dir", "audio_model_dir"):
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser()
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


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
