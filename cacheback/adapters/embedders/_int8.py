"""Run a weight-only int8 ONNX model on int8 kernels instead of float copies of its weights.

The packaged MiniLM stores each weight as ``Mul(Cast(q_int8), scale)``. onnxruntime folds
that into a float32 constant at load, so every inference reads about 45 MB of float
weights (and the vocabulary table takes another 47 MB of memory). On a CPU whose caches
went cold while the request waited (the normal case for a miss), reading those weights
dominates the cost of embedding one query.

:func:`rewrite_int8_weights` rewrites the graph around the very same int8 values:

- ``MatMul(A, Mul(Cast(q), s))`` with a per-output-column scale ``s`` becomes
  ``MatMulNBits`` (8 bits, zero point 128, every block's scale the column's scale), so the
  weights it holds are bit-for-bit those of the original model; with
  ``accuracy_level=4`` the kernel also quantizes the activations, per block of
  :data:`BLOCK` values, and multiplies in int8;
- ``Gather(Mul(Cast(q), s), ids)`` with a per-row scale becomes
  ``Mul(Cast(Gather(q, ids)), Gather(s, ids))``: the table stays int8 in memory.

Activations quantized per block of 32 move a pair's cosine similarity by at most 0.009
(p99 0.0045) over 600 evaluation questions (``loadtests/bench_embed_compute.py``), and
``cacheback eval`` gives the same precision and recall as the float computation
(docs/storage.md, "Embedding precision").
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BLOCK", "rewrite_int8_weights"]

#: Activation block for MatMulNBits. Smaller blocks follow the float result more closely;
#: 32 matches it on the evaluation sets, 128 already shifts recall (docs/storage.md).
BLOCK = 32
_MS_DOMAIN = "com.microsoft"


def rewrite_int8_weights(model: Any, *, block: int = BLOCK) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; return how many nodes changed.

    Weights that do not follow the pattern (another scale layout, a K that ``block`` does
    not divide) keep their float path, so any model stays correct; 0 means untouched.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1

    def dequantized(name: str) -> tuple[Any, Any, np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """(Mul node, Cast node, q, scale) when ``name`` is Mul(Cast(int8 constant), constant)."""
        mul = producer.get(name)
        if mul is None or mul.op_type != "Mul" or uses.get(name) != 1:
            return None
        cast = producer.get(mul.input[0])
        scale_name = mul.input[1]
        if cast is None or cast.op_type != "Cast" or scale_name not in inits:
            return None
        if cast.input[0] not in inits or uses.get(cast.output[0]) != 1:
            return None
        q = numpy_helper.to_array(inits[cast.input[0]])
        if q.dtype != np.int8 or q.ndim != 2:
            return None
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        return mul, cast, q, scale

    replaced: dict[int, list[Any]] = {}
    dropped: set[int] = set()
    added: list[Any] = []
    for node in graph.node:
        if node.op_type == "MatMul":
            found = dequantized(node.input[1])
            if found is None:
                continue
            mul, cast, q, scale = found
            k, n = q.shape
            if scale.size != n or k % block:
                continue
            base = cast.input[0]
            blocks = k // block
            # MatMulNBits wants B as [N, blocks, block] unsigned, i.e. transposed and offset.
            packed = (q.T.astype(np.int16) + 128).astype(np.uint8).reshape(n, blocks, block)
            scales = np.repeat(scale.reshape(n, 1), blocks, axis=1).reshape(-1)
            zeros = np.full(n * blocks, 128, dtype=np.uint8)
            added += [
                numpy_helper.from_array(packed, f"{base}.nbits"),
                numpy_helper.from_array(scales, f"{base}.nbits_scale"),
                numpy_helper.from_array(zeros, f"{base}.nbits_zero"),
            ]
            replaced[id(node)] = [
                helper.make_node(
                    "MatMulNBits",
                    [node.input[0], f"{base}.nbits", f"{base}.nbits_scale", f"{base}.nbits_zero"],
                    list(node.output),
                    name=f"{node.name}.nbits",
                    domain=_MS_DOMAIN,
                    K=k,
                    N=n,
                    bits=8,
                    block_size=block,
                    accuracy_level=4,
                )
            ]
            dropped.update((id(mul), id(cast)))
        elif node.op_type == "Gather":
            found = dequantized(node.input[0])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if found is None or axis != 0:
                continue
            mul, cast, q, scale = found
            if scale.shape != (q.shape[0], 1):
                continue
            out = node.output[0]
            replaced[id(node)] = [
                helper.make_node("Gather", [cast.input[0], node.input[1]], [f"{out}.q"], axis=0),
                helper.make_node("Cast", [f"{out}.q"], [f"{out}.f"], to=1),  # 1 = FLOAT
                helper.make_node("Gather", [mul.input[1], node.input[1]], [f"{out}.s"], axis=0),
                helper.make_node("Mul", [f"{out}.f", f"{out}.s"], [out]),
            ]
            dropped.update((id(mul), id(cast)))
    if not replaced:
        return 0
    nodes: list[Any] = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(op.domain == _MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return len(replaced)
