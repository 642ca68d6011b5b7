"""The sections of the engine settings: one small frozen dataclass per concern, each
checking its own values. ``Settings`` (``_settings.py``) holds one of each.

A field keeps its flat name inside its section (``matching.similarity_threshold``), so the
flat keyword arguments and ``CACHEBACK_<NAME>`` variables map onto sections one to one.
Defaults are those of the product page.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigError
from ._ports import MediaEmbedder

SynthesisMode = Literal["off", "auto", "always"]
SYNTHESIS_MODES = ("off", "auto", "always")
IndexKind = Literal["auto", "hnsw", "numpy"]
INDEX_KINDS = ("auto", "hnsw", "numpy")

DEFAULT_CACHE_DIR = "~/.cacheback"

#: "int8": the packaged model's int8 weights on int8 kernels; "float32": the same weights
#: in float32, as onnxruntime would compute them; "auto": int8 on CPUs with 8-bit dot-product
#: instructions, float32 on the others (docs/storage.md, "Embedding precision").
EMBED_COMPUTE_MODES = ("auto", "int8", "float32")
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CACHEBACK_CACHE_DIR", DEFAULT_CACHE_DIR)).expanduser()


def _check(ok: bool, section: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"settings {section}: {message}")


def _fraction(section: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(0.0 < value <= 1.0, section, f"{name} must be in (0, 1], not {value!r}")


def _positive(section: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value > 0, section, f"{name} must be positive, not {value!r}")


def _at_least(low: int, section: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value >= low, section, f"{name} must be at least {low}, not {value!r}")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where entries live, for how long and how many (the store, the hot cache)."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    # a shared store for many replicas (docs/storage.md): "postgresql://…"; None: the
    # embedded store in cache_dir
    store_url: str | None = field(default=None, repr=False)  # may carry a password
    store_timeout_s: float = 0.25  # budget of one store call on the request path (then a miss)
    # answers kept in memory while the store is unreachable, written when it is back (the
    # oldest dropped past this; 0: none kept)
    write_retry_buffer: int = 5000
    index: IndexKind = "auto"
    namespace: str = "default"
    cache_ttl: float = 86400.0
    max_entries: int = 100_000
    hot_cache_size: int = 50_000

    def __post_init__(self) -> None:
        s = "storage"
        _positive(s, self, "cache_ttl", "store_timeout_s")  # seconds
        _check(
            self.store_url is None or self.store_url.startswith(("postgresql://", "postgres://")),
            s,
            "store_url must be a postgresql:// URL (or unset for the embedded store)",
        )
        kinds = ", ".join(INDEX_KINDS)
        _check(self.index in INDEX_KINDS, s, f"index must be one of {kinds}, not {self.index!r}")
        _at_least(1, s, self, "max_entries")
        _at_least(0, s, self, "hot_cache_size", "write_retry_buffer")


@dataclass(frozen=True, slots=True)
class MatchingSettings:
    """When a stored answer counts as a hit: threshold, candidates, hit guard, blocklist."""

    similarity_threshold: float = 0.92
    top_k: int = 5
    guard_enabled: bool = True
    negative_threshold: float = 0.80
    negative_false_positive_limit: int = 5
    # per-entry thresholds from feedback (docs/hit-safety.md#feedback, core/_feedback.py)
    feedback_margin: float = 0.02  # a wrong hit at s: that entry then needs s + margin
    feedback_relax_step: float = 0.002  # a confirmed correct hit lowers it by this much
    feedback_verify_rate: float = 0.0  # share of paraphrase hits the cheap model checks afterwards
    # a clear miss (by the miss probe) sends upstream before it embeds; a late hit takes it back
    speculative_upstream: bool = False
    speculation_margin: float | None = None  # the probe's cut below the threshold; None: calibrated

    def __post_init__(self) -> None:
        s = "matching"
        _fraction(s, self, "similarity_threshold", "negative_threshold")
        _at_least(1, s, self, "top_k", "negative_false_positive_limit")
        _check(0.0 <= self.feedback_margin <= 0.2, s,
               f"feedback_margin must be in [0, 0.2], not {self.feedback_margin!r}")  # fmt: skip
        _check(0.0 <= self.feedback_relax_step <= 0.1, s,
               f"feedback_relax_step must be in [0, 0.1], not {self.feedback_relax_step!r}")  # fmt: skip
        _check(0.0 <= self.feedback_verify_rate <= 1.0, s,
               f"feedback_verify_rate must be in [0, 1], not {self.feedback_verify_rate!r}")  # fmt: skip
        margin = self.speculation_margin
        _check(margin is None or 0.0 <= margin <= 1.0, s,
               f"speculation_margin must be in [0, 1] or None, not {margin!r}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SynthesisSettings:
    """The synthesis tier and its endpoint (docs/synthesis.md): any OpenAI-compatible chat
    completions API."""

    synthesis_mode: SynthesisMode = "off"
    synthesis_threshold: float = 0.80
    synthesis_top_k: int = 5
    synthesis_model: str | None = None
    synthesis_base_url: str | None = None
    synthesis_api_key: str | None = field(default=None, repr=False)  # sent only to synthesis_base_url
    synthesis_timeout_s: float = 10.0  # whole call; for streams, until the first answer tokens
    synthesis_max_tokens: int = 1024
    synthesis_store: bool = False  # store synthesized answers as verbatim entries

    def __post_init__(self) -> None:
        s = "synthesis"
        _check(
            self.synthesis_mode in SYNTHESIS_MODES,
            s,
            f"synthesis_mode must be one of {', '.join(SYNTHESIS_MODES)}, not {self.synthesis_mode!r}",
        )
        _fraction(s, self, "synthesis_threshold")
        _positive(s, self, "synthesis_timeout_s")
        _at_least(1, s, self, "synthesis_max_tokens", "synthesis_top_k")


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    """The text embedder and how its inferences are batched and run."""

    embedder: str = "minilm"
    model_dir: Path | None = None
    embed_max_batch: int = 32
    embed_max_wait_ms: float = 2.0
    embed_threads: int = 1  # worker threads running inference at once
    intra_op_threads: int = 2  # onnxruntime threads inside one inference
    embed_compute: str = "auto"  # minilm: "int8" kernels, "float32", or "auto" (by the CPU)
    embed_keep_warm_ms: float = 0.0  # tiny inference this often while active; 0 = off (no gain measured)
    embed_keep_warm_for_s: float = 10.0  # ... for this long after the last real embedding
    embed_device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (adapters/embedders/_device.py)

    def __post_init__(self) -> None:
        s = "embedding"
        _check(
            self.embed_compute in EMBED_COMPUTE_MODES,
            s,
            f"embed_compute must be one of {', '.join(EMBED_COMPUTE_MODES)}, not {self.embed_compute!r}",
        )
        _check(
            bool(_DEVICE.fullmatch(self.embed_device.strip().lower())),
            s,
            f"embed_device must be 'cpu', 'cuda', 'cuda:N' or 'auto', not {self.embed_device!r}",
        )
        _check(
            self.embed_keep_warm_ms >= 0 and self.embed_keep_warm_for_s >= 0,
            s,
            "embed_keep_warm_ms and embed_keep_warm_for_s must be >= 0 (0 = off)",
        )
        _at_least(1, s, self, "embed_max_batch", "embed_threads", "intra_op_threads")
        _at_least(0, s, self, "embed_max_wait_ms")


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Images and audio (docs/multimodal.md): always keyed exactly by their bytes; an
    embedder per modality adds the semantic media tier."""

    image_embedder: str | MediaEmbedder | None = None  # "clip", a registered name, or an object
    image_model_dir: Path | None = None
    audio_embedder: str | MediaEmbedder | None = None  # "whisper", a registered name, or an object
    audio_model_dir: Path | None = None
    media_similarity_threshold: float = 0.95

    def __post_init__(self) -> None:
        _fraction("media", self, "media_similarity_threshold")


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """The stages' inboxes and the write path: group commit and the TTL sweep."""

    queue_size: int = 256  # bound of each stage's inbox (backpressure)
    persist_batch: int = 128
    persist_interval_s: float = 0.005
    sweep_interval_s: float = 300.0

    def __post_init__(self) -> None:
        s = "pipeline"
        _at_least(1, s, self, "queue_size", "persist_batch")
        _at_least(0, s, self, "persist_interval_s")
        _positive(s, self, "sweep_interval_s")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    """What the cache reports: the content of its logs, the prices savings are counted at."""

    log_content: bool = False  # put query text in logs
    prices: dict[str, Any] | str | None = None  # price overrides, or a JSON file (core/_costs.py)


#: The sections under their attribute names on ``Settings``, in the order the docs list them.
SECTIONS: dict[str, type[Any]] = {
    "storage": StorageSettings,
    "matching": MatchingSettings,
    "synthesis": SynthesisSettings,
    "embedding": EmbeddingSettings,
    "media": MediaSettings,
    "pipeline": PipelineSettings,
    "observability": ObservabilitySettings,
}
