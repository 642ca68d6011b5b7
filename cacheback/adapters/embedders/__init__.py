"""Embedders: MiniLM text (the default), CLIP images and Whisper audio on onnxruntime, the
media tier, plus a registry.

Importing this package is cheap: onnxruntime, tokenizers and Pillow load only
when a model does.
"""

from ._clip import ClipImageEmbedder
from ._media_tier import MediaTier
from ._minilm import MiniLMEmbedder
from ._registry import (
    EmbedderFactory,
    available,
    choose_default_embedder,
    create,
    create_media,
    load_default_embedder,
    register,
    unregister,
)
from ._whisper import WhisperAudioEmbedder

__all__ = [
    "ClipImageEmbedder",
    "EmbedderFactory",
    "MediaTier",
    "MiniLMEmbedder",
    "WhisperAudioEmbedder",
    "available",
    "choose_default_embedder",
    "create",
    "create_media",
    "load_default_embedder",
    "register",
    "unregister",
]
