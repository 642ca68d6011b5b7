"""all-MiniLM-L6-v2 in NumPy: the fallback when onnxruntime cannot run.

Same model file (and sha256), tokenizer and pooling as :class:`MiniLMEmbedder`, so
its vectors live in the same space as the ones already stored (cosine >= 0.999 to
onnxruntime's float32 computation of the weights; docs/degradation.md). The
weights are read with ``_onnx_reader`` (no ``onnx`` needed: platforms without
onnxruntime wheels usually lack onnx wheels too) and ``_bert_weights``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cacheback.core._errors import ConfigError, EmbedderError
from cacheback.core._types import Vector

from ._bert_weights import F32, BertWeights, bert_weights
from ._minilm import (
    DIM,
    MODEL_ID,
    _directory_files,
    _packaged_files,
    encode,
    l2_normalise,
    plan_runs,
    verified_tokenizer,
)
from ._numpy_bert import bert_forward
from ._onnx_reader import read_onnx

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["NumpyMiniLMEmbedder", "limit_blas_threads"]


class NumpyMiniLMEmbedder:
    """all-MiniLM-L6-v2 in NumPy: the same files and vectors as MiniLMEmbedder, no onnxruntime.

    ``reason`` says why it runs instead of the onnxruntime embedder; stats and
    ``/health`` show it. ``blas_threads`` caps NumPy's BLAS pool when the model loads
    (see :func:`limit_blas_threads`; None leaves it alone). Loading (checksum, weights,
    tokenizer) happens on the first ``embed()`` or ``load()``, once, under a lock.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        max_length: int = 256,
        length_grouping: bool = True,
        reason: str | None = None,
        blas_threads: int | None = 1,
    ) -> None:
        if not 2 <= max_length <= 512:
            raise ConfigError("max_length must be between 2 and 512 tokens")
        if blas_threads is not None and blas_threads < 1:
            raise ConfigError("blas_threads must be at least 1 (or None to leave BLAS as it is)")
        self._blas_threads = blas_threads
        self._blas_limited: int | None = None
        self._max_length = max_length
        self._length_grouping = length_grouping
        self._reason = reason
        self._expected_sha256: str | None
        if model_dir is None:
            self._model, self._tokenizer_path, self._expected_sha256 = _packaged_files()
            self._source, self._model_id = "package", f"{MODEL_ID}-onnx-int8"
        else:
            self._model, self._tokenizer_path, self._expected_sha256 = _directory_files(
                Path(model_dir).expanduser()
            )
            self._source, self._model_id = "directory", MODEL_ID
        self._lock = threading.Lock()
        self._weights: BertWeights | None = None
        self._tokenizer: Tokenizer | None = None
        _EMBEDDERS.add(self)

    @property
    def name(self) -> str:
        return "minilm"

    @property
    def dim(self) -> int:
        return DIM

    @property
    def loaded(self) -> bool:
        return self._weights is not None

    def load(self) -> None:
        self._load()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self._model_id,
            "dim": DIM,
            "runtime": "numpy",
            "reason": self._reason,
            "source": self._source,
            "model_path": str(self._model),
            "sha256": self._expected_sha256,
            "max_length": self._max_length,
            "length_grouping": self._length_grouping,
            "compute": "float32",
            "blas_threads": self._blas_limited,
            "loaded": self.loaded,
        }

    def embed(self, texts: Sequence[str]) -> Vector:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes strings only")
        out: Vector = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        weights, tokenizer = self._load()
        encodings = encode(tokenizer, texts, self._max_length)
        for run in plan_runs([len(e.ids) for e in encodings], grouping=self._length_grouping):
            out[run] = _pooled(weights, [encodings[i] for i in run])
        return out

    def _load(self) -> tuple[BertWeights, Tokenizer]:
        weights, tokenizer = self._weights, self._tokenizer
        if weights is not None and tokenizer is not None:
            return weights, tokenizer
        with self._lock:
            if self._weights is None or self._tokenizer is None:
                self._load_locked()
            assert self._weights is not None and self._tokenizer is not None
            return self._weights, self._tokenizer

    def _load_locked(self) -> None:
        tokenizer = verified_tokenizer(
            self._model, self._tokenizer_path, self._expected_sha256, self._max_length
        )
        weights = bert_weights(read_onnx(self._model))
        if weights.params["embeddings.LayerNorm.weight"].shape != (DIM,):
            raise EmbedderError(f"{self._model} is not a {DIM}-dim model")
        self._blas_limited = limit_blas_threads(self._blas_threads)
        self._tokenizer = tokenizer
        self._weights = weights  # last: its presence marks the embedder as loaded


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(threads: int | None) -> int | None:
    """Cap the BLAS thread pool at ``threads`` (process-wide); the cap set, or None if left alone.

    Per query the products are small, and OpenBLAS's worker threads spin while they wait:
    on a busy two-core host two threads made a query 4x slower than one (146 ms against
    34 ms) and take CPU from the event loop, which is why the onnxruntime sessions run
    without spinning too. A thread count the user set in the environment is respected.
    """
    if threads is None or any(os.environ.get(name) for name in _BLAS_ENV):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    threadpool_limits(limits=threads, user_api="blas")  # applies on construction, and stays
    return threads


def _pooled(weights: BertWeights, encodings: Sequence[Encoding]) -> Vector:
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    hidden = bert_forward(weights, ids, mask)
    w = mask[:, :, None].astype(np.float32)
    pooled: F32 = (hidden * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-9)
    return l2_normalise(pooled)


# The weights are plain arrays and survive a fork; only the load lock may have been held
# by a parent thread at that moment, so a child gets a fresh one.
_EMBEDDERS: weakref.WeakSet[NumpyMiniLMEmbedder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for embedder in list(_EMBEDDERS):
        embedder._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
