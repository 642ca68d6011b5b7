"""The float32 model: the fused int8 graph with its weight MatMuls turned back into float ones.

onnxruntime left to itself turns every int8 weight of the packaged model into float32 at
load, the 30,522 x 384 vocabulary table included, and runs the exporter's small attention
ops one by one. Starting from the int8 rewrite after ``_fuse`` instead keeps what costs
nothing in speed and saves memory: the vocabulary table stays int8 (only the gathered rows
are converted), attention is one kernel per layer and pooling runs in the graph. Only the
8-bit ``MatMulNBits`` become float ``MatMul`` again, with weights computed as
``(byte - zero point) * scale``, the very products onnxruntime's constant folding makes of
``Cast(int8) * scale``. The caller keeps the result only if it gives the vectors of the
source model run as it is (``_int8_file.same_vectors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dequantize_matmuls", "float32_only"]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def dequantize_matmuls(model: Any) -> int:
    """Replace each 8-bit ``MatMulNBits`` (weights, scales and zero points as initializers,
    no bias or group index) by a float32 ``MatMul``; returns how many were replaced. Any
    other ``MatMulNBits`` is left as it is (``float32_only`` then says False)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    # Initializers other nodes read too stay, even when a replaced node read them.
    used_by_others = {name for node in graph.node if node.op_type != "MatMulNBits" for name in node.input}
    nodes: list[Any] = []
    dropped: set[str] = set()
    replaced = 0
    for node in graph.node:
        inputs = list(node.input)
        attrs = _attrs(node) if node.op_type == "MatMulNBits" else {}
        if attrs.get("bits") != 8 or len(inputs) != 4 or not all(name in inits for name in inputs[1:]):
            nodes.append(node)  # any other op, or a MatMulNBits of another layout
            continue
        k, n, block = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"])
        blocks = -(-k // block)
        packed = numpy_helper.to_array(inits[inputs[1]]).astype(np.float32).reshape(n, blocks * block)
        scales = numpy_helper.to_array(inits[inputs[2]]).astype(np.float32).reshape(n, blocks)
        zeros = numpy_helper.to_array(inits[inputs[3]]).astype(np.float32).reshape(n, blocks)
        per_value = np.repeat(scales, block, axis=1)
        offsets = np.repeat(zeros, block, axis=1)
        weights = ((packed - offsets) * per_value)[:, :k].T.astype(np.float32)
        name = f"{inputs[1]}.float32"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weights), name))
        matmul = helper.make_node("MatMul", [inputs[0], name], list(node.output), name=f"{node.name}.float32")
        nodes.append(matmul)
        dropped.update(inputs[1:])
        replaced += 1
    keep = [i for i in graph.initializer if i.name not in dropped or i.name in used_by_others]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


def float32_only(model: Any) -> bool:
    """True when no 8-bit kernel is left in the graph."""
    return not any(node.op_type == "MatMulNBits" for node in model.graph.node)
