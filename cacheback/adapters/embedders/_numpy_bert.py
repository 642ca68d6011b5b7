"""The BERT encoder forward pass in NumPy, as the MiniLM ONNX graph computes it.

Embeddings (word + position + token type 0), layer norm, then per layer: attention
over the unmasked keys (scaled by 1/sqrt(head size)), output projection, residual and
layer norm, a GELU feed-forward (exact, erf-based), residual and layer norm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import EmbedderError

from ._bert_weights import BertWeights

__all__ = ["HEADS", "bert_forward", "erf"]

F32 = NDArray[np.float32]
#: all-MiniLM-L6-v2: 12 heads of 32 over 384 hidden units.
HEADS = 12


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
