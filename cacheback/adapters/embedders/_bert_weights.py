"""The parameters of a BERT encoder, read from its ONNX graph and dequantized as the graph does.

The packaged MiniLM stores each weight as ``Mul(Cast(int8 q), float scale)``
(symmetric: no zero point; a scale per output column for linear layers, per row
for embedding tables); the same product is computed here. Float initializers (a
float32 export in ``model_dir``) are used as they are. The embedding tables stay
int8 with their scales, dequantized per looked-up row.

Each linear layer is found through its bias: the graph computes
``Add(MatMul(x, W), <prefix>.bias)``, so ``W`` is ``<prefix>.weight`` even when
the exporter gave it an anonymous name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import EmbedderError

from ._onnx_reader import OnnxGraph

__all__ = ["BertWeights", "Table", "bert_weights"]

F32 = NDArray[np.float32]
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
