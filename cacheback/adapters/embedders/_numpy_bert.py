"""The MiniLM forward pass in NumPy: the fallback when onnxruntime cannot run.

Same weights, same tokenizer, same pooling as :class:`MiniLMEmbedder`, so its
vectors live in the same space as the ones already stored (cosine >= 0.999 to
onnxruntime's float32 computation of the weights; docs/degradation.md). The
weights are read from the ONNX file itself (``_onnx_reader``, no ``onnx``
needed) and dequantized exactly as the graph does: the packaged model stores
each weight as ``Mul(Cast(int8 q), float scale)`` (symmetric: no zero point;
per output column for linear layers, per row for embedding tables). Float
initializers (a float32 export in ``model_dir``) are used as they are.

Each linear layer is found through its bias: the graph computes
``Add(MatMul(x, W), <prefix>.bias)``, so ``W`` is ``<prefix>.weight`` even when
the exporter gave it an anonymous name.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._types import Vector

from ._minilm import (
    DIM,
    MODEL_ID,
    _directory_files,
    _packaged_files,
    l2_normalise,
    plan_runs,
    verify_sha256,
)
from ._onnx_reader import OnnxGraph, read_onnx

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["BertWeights", "NumpyMiniLMEmbedder", "bert_forward", "bert_weights"]

F32 = NDArray[np.float32]
#: all-MiniLM-L6-v2: 12 heads of 32 over 384 hidden units.
HEADS = 12
_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
_LAYER_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


@dataclass(frozen=True, slots=True)
class Table:
    """An embedding table, kept int8 with per-row scales when the model stores it so."""

    values: NDArray[Any]
    scale: F32 | None = None

    def rows(self, index: NDArray[np.int64]) -> F32:
        picked = self.values[index].astype(np.float32)
        return picked * self.scale[index] if self.scale is not None else picked


@dataclass(frozen=True, slots=True)
class BertWeights:
    word: Table
    position: Table
    token_type: Table
    params: dict[str, F32]  # canonical BERT names: "encoder.layer.0.attention.self.query.weight", ...
    layers: int
    epsilon: float

    def __getitem__(self, name: str) -> F32:
        return self.params[name]


def _canonical(name: str) -> str | None:
    """``inner.encoder.layer.3.output.dense.bias`` -> ``encoder.layer.3.output.dense.bias``."""
    for anchor in ("embeddings.", "encoder."):
        at = name.find(anchor)
        if at == 0 or (at > 0 and name[at - 1] in "./"):
            return name[at:]
    return None


def bert_weights(graph: OnnxGraph) -> BertWeights:
    """The float32 parameters of a BERT encoder graph (EmbedderError if the layout is unknown)."""
    inits = graph.initializers
    producer = {out: node for node in graph.nodes for out in node.outputs}

    def quantized(name: str) -> tuple[NDArray[Any], F32] | None:
        """(int8 values, scale) when ``name`` is ``Mul(Cast(q), scale)`` over constants."""
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type == "Mul" and len(node.inputs) == 2:
            for q_side, s_side in ((0, 1), (1, 0)):
                cast = producer.get(node.inputs[q_side])
                scale = inits.get(node.inputs[s_side])
                if (
                    cast is not None
                    and cast.op_type == "Cast"
                    and scale is not None
                    and cast.inputs[0] in inits
                ):
                    return inits[cast.inputs[0]], scale.astype(np.float32)
        return None

    def value(name: str) -> F32 | None:
        if name in inits and inits[name].dtype == np.float32:
            return inits[name]
        found = quantized(name)
        if found is None:
            return None
        q, scale = found
        out: F32 = (q.astype(np.float32) * scale).astype(np.float32)
        return out

    params: dict[str, F32] = {}
    tables: dict[str, Table] = {}
    epsilon = 1e-12
    for name, array in inits.items():
        key = _canonical(name)
        if key is not None and array.dtype == np.float32:
            params[key] = array
    for node in graph.nodes:
        if node.op_type == "LayerNormalization" and "epsilon" in node.attributes:
            epsilon = float(node.attributes["epsilon"])
        elif node.op_type == "Gather" and node.inputs:
            key = _canonical(node.inputs[0])
            if key is None or not key.startswith("embeddings."):
                continue
            found = quantized(node.inputs[0])
            if found is not None and found[1].ndim == 2 and found[1].shape[1] == 1:
                tables[key] = Table(found[0], found[1])
            else:
                table = value(node.inputs[0])
                if table is not None:
                    tables[key] = Table(table)
        elif node.op_type == "Add" and len(node.inputs) == 2:
            for bias_side in (0, 1):
                bias = _canonical(node.inputs[bias_side])
                matmul = producer.get(node.inputs[1 - bias_side])
                if bias is None or not bias.endswith(".bias") or matmul is None:
                    continue
                if matmul.op_type == "MatMul" and len(matmul.inputs) == 2:
                    weight = value(matmul.inputs[1])
                    if weight is not None and weight.ndim == 2:
                        params[bias[: -len("bias")] + "weight"] = weight
    for key in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        full = f"embeddings.{key}.weight"
        if full not in tables and full in params:
            tables[full] = Table(params[full])
    layers = 0
    while f"encoder.layer.{layers}.attention.self.query.weight" in params:
        layers += 1
    needed = ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(layers):
        needed += [f"encoder.layer.{i}.{part}.{kind}" for part in _LAYER_PARTS for kind in ("weight", "bias")]
        needed += [f"encoder.layer.{i}.{norm}.{kind}" for norm in _LAYER_NORMS for kind in ("weight", "bias")]
    missing = [n for n in needed if n not in params]
    missing += [
        n for n in ("word", "position", "token_type") if f"embeddings.{n}_embeddings.weight" not in tables
    ]
    if layers == 0 or missing:
        raise EmbedderError(
            "the model's graph is not a BERT encoder the NumPy fallback can run"
            f" ({layers} layers found; missing {', '.join(missing[:4]) or 'encoder layers'})"
        )
    return BertWeights(
        word=tables["embeddings.word_embeddings.weight"],
        position=tables["embeddings.position_embeddings.weight"],
        token_type=tables["embeddings.token_type_embeddings.weight"],
        params={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items() if k in set(needed)},
        layers=layers,
        epsilon=epsilon,
    )


def _layer_norm(x: F32, weight: F32, bias: F32, epsilon: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    out: F32 = centred / np.sqrt(variance + np.float32(epsilon)) * weight + bias
    return out


def erf(x: F32) -> F32:
    """Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7): NumPy has no erf."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: F32 = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _gelu(x: F32) -> F32:
    out: F32 = 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))
    return out


def bert_forward(
    weights: BertWeights, ids: NDArray[np.int64], mask: NDArray[np.int64], heads: int = HEADS
) -> F32:
    """The last hidden state, shape (batch, length, hidden), as the ONNX graph computes it
    (token type 0 everywhere; masked keys get no attention)."""
    batch, length = ids.shape
    if length > weights.position.values.shape[0]:
        raise EmbedderError(
            f"{length} tokens exceed the model's {weights.position.values.shape[0]} positions"
        )
    p = weights.params
    eps = weights.epsilon
    x = (
        weights.word.rows(ids)
        + weights.position.rows(np.arange(length))[None]
        + weights.token_type.rows(np.zeros(1, np.int64))
    )
    x = _layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps)
    hidden = x.shape[-1]
    size = hidden // heads
    # Masked keys get the most negative float, as the graph adds: softmax then gives them 0.
    key_bias: F32 = np.where(mask[:, None, None, :] > 0, np.float32(0.0), np.float32(-3.4028234663852886e38))
    scale = np.float32(1.0 / np.sqrt(size))
    for i in range(weights.layers):
        pre = f"encoder.layer.{i}."

        def linear(v: F32, part: str, pre: str = pre) -> F32:
            # On 2-D rows: a 3-D @ 2-D product takes a slower, batched path.
            flat = v.reshape(batch * length, v.shape[-1]) @ p[f"{pre}{part}.weight"]
            out: F32 = (flat + p[f"{pre}{part}.bias"]).reshape(batch, length, -1)
            return out

        def split(v: F32) -> F32:
            return v.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        q = split(linear(x, "attention.self.query"))
        k = split(linear(x, "attention.self.key"))
        v = split(linear(x, "attention.self.value"))
        scores: F32 = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context: F32 = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        a = _layer_norm(
            linear(context, "attention.output.dense") + x,
            p[f"{pre}attention.output.LayerNorm.weight"],
            p[f"{pre}attention.output.LayerNorm.bias"],
            eps,
        )
        inner = _gelu(linear(a, "intermediate.dense"))
        x = _layer_norm(
            linear(inner, "output.dense") + a,
            p[f"{pre}output.LayerNorm.weight"],
            p[f"{pre}output.LayerNorm.bias"],
            eps,
        )
    out: F32 = x.astype(np.float32, copy=False)
    return out


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
        try:
            encodings = [tokenizer.encode(text) for text in texts]
        except Exception as exc:
            raise EmbedderError(f"tokenizer failed: {exc}") from exc
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
        for path in (self._model, self._tokenizer_path):
            if not path.is_file():
                raise ModelNotFound(f"embedding model file {path} has gone missing")
        if self._expected_sha256 is not None:
            verify_sha256(self._model, self._expected_sha256)
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderError("tokenizers is not installed: pip install tokenizers") from exc
        try:
            tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
        except Exception as exc:
            raise EmbedderError(f"could not read {self._tokenizer_path}: {exc}") from exc
        tokenizer.no_padding()  # padded per run, after the length grouping, as MiniLMEmbedder does
        tokenizer.enable_truncation(max_length=self._max_length)
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
