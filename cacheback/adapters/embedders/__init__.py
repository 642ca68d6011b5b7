"""Embedders: MiniLM text (the default) and CLIP images on onnxruntime, plus a registry.

Importing this package is cheap: onnxruntime, tokenizers and Pillow load only
when a model does.
"""

from ._clip import ClipImageEmbedder
from ._minilm import MiniLMEmbedder
from ._registry import (
    EmbedderFactory,
    available,
    create,
    load_default_embedder,
    register,
    unregister,
)

__all__ = [
    "ClipImageEmbedder",
    "EmbedderFactory",
    "MiniLMEmbedder",
    "available",
    "create",
    "load_default_embedder",
    "register",
    "unregister",
]
