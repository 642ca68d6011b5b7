"""The public surface: what ``from cacheback import *`` promises, and nothing private."""

from __future__ import annotations

import subprocess
import sys

import cacheback

EXPECTED = {
    "AsyncCachedAnthropic",
    "AsyncCachedOpenAI",
    "AsyncEngine",
    "AsyncNegativeCache",
    "AsyncSemanticCache",
    "CachebackBlocked",
    "CachebackError",
    "CachedAnthropic",
    "CachedOpenAI",
    "ConfigError",
    "EmbedderError",
    "EmbeddingSettings",
    "EngineClosed",
    "LookupResult",
    "MatchingSettings",
    "MediaSettings",
    "ModelNotFound",
    "NegativeCache",
    "ObservabilitySettings",
    "PipelineSettings",
    "SemanticCache",
    "Settings",
    "StorageSettings",
    "StoreCorrupt",
    "StoreError",
    "SynthesisSettings",
    "Tier",
    "__version__",
    "freeze_gc",  # an explicit opt-in (docs/engine.md): the library never freezes by itself
}


def test_all_is_exactly_the_documented_surface() -> None:
    assert set(cacheback.__all__) == EXPECTED
    for name in cacheback.__all__:
        assert getattr(cacheback, name) is not None, name


def test_no_private_names_exported() -> None:
    assert not [n for n in cacheback.__all__ if n.startswith("_") and n != "__version__"]


def test_clients_are_sdk_subclasses() -> None:
    import anthropic
    import openai

    assert issubclass(cacheback.CachedOpenAI, openai.OpenAI)
    assert issubclass(cacheback.AsyncCachedOpenAI, openai.AsyncOpenAI)
    assert issubclass(cacheback.CachedAnthropic, anthropic.Anthropic)
    assert issubclass(cacheback.AsyncCachedAnthropic, anthropic.AsyncAnthropic)


def test_import_does_not_load_sdks_or_models() -> None:
    code = (
        "import sys, cacheback; "
        "print(','.join(m for m in ('openai', 'anthropic', 'onnxruntime', 'hnswlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_form_one_tree() -> None:
    for name in (
        "CachebackBlocked",
        "ConfigError",
        "EmbedderError",
        "EngineClosed",
        "ModelNotFound",
        "StoreCorrupt",
        "StoreError",
    ):
        assert issubclass(getattr(cacheback, name), cacheback.CachebackError)
