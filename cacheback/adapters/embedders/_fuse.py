"""Fuse the int8 MiniLM graph's small ops into onnxruntime's com.microsoft kernels.

After :func:`._int8.rewrite_int8_weights` about 80 % of one short question's time is in
the 8-bit MatMuls; most of the rest goes to some 20 small ops per attention block
(reshapes, transposes, a mask built from ``Range``/``GatherND``, ``Softmax`` and a NaN
guard), each a kernel launch on a tensor of a few kilobytes. onnxruntime's own optimizer
fuses the biases and the layer norms but not these (the exporter's
scaled-dot-product-attention shape does not match its patterns).

:func:`fuse_model` rewrites the same math into fewer kernels, touching no weight values:

- each attention core (``softmax(q·kᵀ·s + padding) · v`` over heads) becomes one
  ``MultiHeadAttention`` with the attention mask as its key padding mask;
- the query, key and value projections reading the same input become one
  ``MatMulNBits`` over the concatenated columns (each column's bytes, scale and block
  layout unchanged, the activations quantized once instead of three times) and a
  ``Split``;
- mean pooling over the mask moves into the graph, so the model outputs one 384-value
  row per text instead of every token's hidden state.

Every pattern is matched on its structure and constants; anything else is left as it
is. The caller checks the result against the unfused model on real inference
(``_int8_file``), so a graph that matches the shapes but not the meaning is never used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["POOLED_OUTPUT", "fuse_model"]

_MS = "com.microsoft"
#: The graph output added by the pooling fusion: (batch, hidden) mean over the mask.
POOLED_OUTPUT = "sentence_embedding"


class _Graph:
    """Indexes over an ONNX graph: producers, consumers, constant values."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.inits = {init.name: init for init in self.graph.initializer}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self._to_array = numpy_helper.to_array

    def const(self, name: str) -> np.ndarray[Any, Any] | None:
        if name in self.inits:
            return np.asarray(self._to_array(self.inits[name]))
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                return np.asarray(self._to_array(attr.t))
        return None

    def scalar(self, name: str, value: float) -> bool:
        arr = self.const(name)
        if arr is None or arr.size != 1:
            return False
        return bool(np.isclose(float(arr.reshape(-1)[0]), value, rtol=1e-6))

    def made_by(self, name: str, op: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def only_use(self, name: str) -> Any | None:
        users = self.consumers.get(name, [])
        outputs = {o.name for o in self.graph.output}
        return users[0] if len(users) == 1 and name not in outputs else None


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _heads_from(g: _Graph, reshaped: str) -> tuple[str, int, int] | None:
    """(projection output, heads, head size) when ``reshaped`` is
    ``Transpose[0,2,1,3](Reshape(x, [.., .., heads, head_size]))``."""
    tr = g.made_by(reshaped, "Transpose")
    if tr is None or list(_attr(tr, "perm", [])) != [0, 2, 1, 3]:
        return None
    rs = g.made_by(tr.input[0], "Reshape")
    if rs is None:
        return None
    shape = g.made_by(rs.input[1], "Concat")
    if shape is None or len(shape.input) != 4:
        return None
    heads_size = [g.const(n) for n in shape.input[2:]]
    if any(v is None or v.size != 1 for v in heads_size):
        return None
    heads, size = (int(v.reshape(-1)[0]) for v in heads_size if v is not None)
    if heads == -1 and size > 0:  # [B, S, -1, head_size]: heads from the projection's width
        add = g.made_by(rs.input[0], "Add")
        bias = g.const(add.input[1]) if add is not None else None
        if bias is None or bias.ndim != 1 or bias.size % size:
            return None
        heads = bias.size // size
    if heads <= 0 or size <= 0:
        return None
    return rs.input[0], heads, size


def _key_transposed(g: _Graph, name: str) -> str | None:
    """The key's [B, H, S, D] tensor when ``name`` is the exporter's kᵀ: a reshape to
    [-1, S, D], a transpose of the last two axes and a reshape to [B·H?, D, S]."""
    rs2 = g.made_by(name, "Reshape")
    tr = g.made_by(rs2.input[0], "Transpose") if rs2 is not None else None
    if tr is None or list(_attr(tr, "perm", [])) != [0, 2, 1]:
        return None
    rs1 = g.made_by(tr.input[0], "Reshape")
    return rs1.input[0] if rs1 is not None else None


_Swap = list[tuple[Any, list[Any]]]  # (node replaced, the nodes in its place)


def _fuse_attention(g: _Graph, mask_input: str) -> tuple[_Swap, set[int], list[Any]]:
    """A MultiHeadAttention for each attention core: the swaps, the nodes dropped, and the
    nodes to add first (the mask as int32)."""
    from onnx import helper

    replaced: _Swap = []
    dropped: set[int] = set()
    mask_i32 = f"{mask_input}.int32"
    for pv in g.graph.node:
        if pv.op_type != "MatMul":
            continue
        value = _heads_from(g, pv.input[1])
        out_tr = g.only_use(pv.output[0])
        if value is None or out_tr is None or out_tr.op_type != "Transpose":
            continue
        if list(_attr(out_tr, "perm", [])) != [0, 2, 1, 3]:
            continue
        out_rs = g.only_use(out_tr.output[0])
        if out_rs is None or out_rs.op_type != "Reshape":
            continue
        # probs = Where(IsNaN(sm), 0, sm), sm = Softmax(scores + bias, axis=-1)
        guard = g.made_by(pv.input[0], "Where")
        if guard is None:
            continue
        isnan = g.made_by(guard.input[0], "IsNaN")
        sm = g.made_by(guard.input[2], "Softmax")
        if isnan is None or sm is None or isnan.input[0] != sm.output[0] or not g.scalar(guard.input[1], 0.0):
            continue
        if _attr(sm, "axis", -1) not in (-1, 3):
            continue
        add = g.made_by(sm.input[0], "Add")
        if add is None:
            continue
        scores = g.made_by(add.input[0], "MatMul")
        bias = g.made_by(add.input[1], "Where")
        if scores is None or bias is None or not g.scalar(bias.input[1], 0.0):
            continue
        if not g.scalar(bias.input[2], float(np.finfo(np.float32).min)):
            continue
        if not _key_padding(g, bias.input[0], mask_input):
            continue
        # scores = (q · s) @ (kᵀ · s)
        mq, mk = (g.made_by(n, "Mul") for n in scores.input)
        if mq is None or mk is None or mq.input[1] != mk.input[1]:
            continue
        s = g.const(mq.input[1])
        query = _heads_from(g, mq.input[0])
        key_bhsd = _key_transposed(g, mk.input[0])
        key = _heads_from(g, key_bhsd) if key_bhsd is not None else None
        if s is None or s.size != 1 or query is None or key is None:
            continue
        heads, size = value[1], value[2]
        if (query[1], query[2]) != (heads, size) or (key[1], key[2]) != (heads, size):
            continue
        scale = float(s.reshape(-1)[0]) ** 2
        mha = helper.make_node(
            "MultiHeadAttention",
            [query[0], key[0], value[0], "", mask_i32],
            list(out_rs.output),
            name=f"{pv.name}.mha",
            domain=_MS,
            num_heads=heads,
            scale=scale,
        )
        replaced.append((out_rs, [mha]))
        dropped.update({id(pv), id(out_tr)})
    extra = []
    if replaced:
        extra.append(helper.make_node("Cast", [mask_input], [mask_i32], to=6))  # 6 = INT32
    return replaced, dropped, extra


def _key_padding(g: _Graph, name: str, mask_input: str) -> bool:
    """True when the boolean ``name`` is built from ``mask_input`` gathered per key (the
    exporter's ``And(..., GatherND(Cast(mask), ...))``): it reads the mask and nothing of
    the hidden states. The numeric check of the whole model confirms the meaning."""
    seen: set[str] = set()
    stack = [name]
    reads_mask = False
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t == mask_input:
            reads_mask = True
            continue
        node = g.producer.get(t)
        if node is None:
            if t in g.inits:
                continue
            # another graph input (token_type_ids, used only for its shape) is allowed
            continue
        if node.op_type in ("MatMul", "MatMulNBits", "LayerNormalization", "Softmax", "Gather"):
            return False
        stack.extend(i for i in node.input if i)
    return reads_mask


def _fuse_projections(g: _Graph) -> tuple[_Swap, set[int], list[Any]]:
    """MatMulNBits nodes (each followed by a bias Add) that read the same input with the
    same K and settings become one over the concatenated columns, then a Split."""
    from onnx import helper, numpy_helper

    groups: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}
    for node in g.graph.node:
        if node.op_type != "MatMulNBits" or len(node.input) != 4:
            continue
        add = g.only_use(node.output[0])
        if add is None or add.op_type != "Add" or add.input[0] != node.output[0]:
            continue
        if any(n not in g.inits for n in [*node.input[1:], add.input[1]]):
            continue
        settings = tuple(sorted((a.name, _attr(node, a.name)) for a in node.attribute if a.name != "N"))
        groups.setdefault((node.input[0], settings), []).append((node, add))
    replaced: _Swap = []
    dropped: set[int] = set()
    added: list[Any] = []
    for (source, _), members in groups.items():
        if len(members) < 2:
            continue
        first = members[0][0]
        base = f"{first.input[1]}.cat{len(members)}"
        parts = [[g.const(n) for n in node.input[1:]] + [g.const(add.input[1])] for node, add in members]
        if any(p is None for part in parts for p in part):
            continue
        widths = [int(_attr(node, "N")) for node, _ in members]
        for i, suffix in enumerate(("", "_scale", "_zero", "_bias")):
            joined = np.concatenate([part[i] for part in parts])
            added.append(numpy_helper.from_array(joined, f"{base}{suffix}"))
        attrs = {a.name: _attr(first, a.name) for a in first.attribute}
        attrs["N"] = sum(widths)
        matmul = helper.make_node(
            "MatMulNBits",
            [source, base, f"{base}_scale", f"{base}_zero"],
            [f"{base}.out"],
            name=f"{first.name}.cat",
            domain=_MS,
            **attrs,
        )
        bias = helper.make_node("Add", [f"{base}.out", f"{base}_bias"], [f"{base}.biased"])
        added.append(numpy_helper.from_array(np.array(widths, dtype=np.int64), f"{base}_split"))
        split = helper.make_node(
            "Split", [f"{base}.biased", f"{base}_split"], [add.output[0] for _, add in members], axis=-1
        )
        replaced.append((members[0][1], [matmul, bias, split]))
        for node, add in members:
            dropped.add(id(node))
            if add is not members[0][1]:
                dropped.add(id(add))
    return replaced, dropped, added


def _pool(g: _Graph, mask_input: str) -> tuple[list[Any], Any] | None:
    """Nodes computing the masked mean of the 3-D float output, and its graph output."""
    from onnx import TensorProto, helper

    outputs = list(g.graph.output)
    if len(outputs) != 1:
        return None
    hidden = outputs[0]
    dims = hidden.type.tensor_type.shape.dim
    if hidden.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 3:
        return None
    if not dims[2].HasField("dim_value"):
        return None
    width = dims[2].dim_value
    h, p = hidden.name, POOLED_OUTPUT
    g.graph.initializer.extend(
        [
            helper.make_tensor(f"{p}.axis1", TensorProto.INT64, [1], [1]),
            helper.make_tensor(f"{p}.axis2", TensorProto.INT64, [1], [2]),
            helper.make_tensor(f"{p}.eps", TensorProto.FLOAT, [], [1e-9]),
        ]
    )
    nodes = [
        helper.make_node("Cast", [mask_input], [f"{p}.m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [f"{p}.m", f"{p}.axis2"], [f"{p}.m3"]),
        helper.make_node("Mul", [h, f"{p}.m3"], [f"{p}.masked"]),
        helper.make_node("ReduceSum", [f"{p}.masked", f"{p}.axis1"], [f"{p}.sum"], keepdims=0),
        helper.make_node("ReduceSum", [f"{p}.m3", f"{p}.axis1"], [f"{p}.count"], keepdims=0),
        helper.make_node("Max", [f"{p}.count", f"{p}.eps"], [f"{p}.den"]),
        helper.make_node("Div", [f"{p}.sum", f"{p}.den"], [p]),
    ]
    output = helper.make_tensor_value_info(p, TensorProto.FLOAT, [dims[0].dim_param or None, width])
    return nodes, output


def _splice(graph: Any, replaced: _Swap, dropped: set[int], extra: list[Any]) -> None:
    swap = {id(anchor): nodes for anchor, nodes in replaced}
    nodes = list(extra)
    for node in graph.node:
        if id(node) in dropped and id(node) not in swap:
            continue
        nodes.extend(swap.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)


def _prune(model: Any) -> None:
    """Drop nodes and initializers nothing reads any more, then order nodes topologically."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    keep: set[int] = set()
    stack = list(needed)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(i for i in node.input if i)
    live = [n for n in graph.node if id(n) in keep]
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered: list[Any] = []
    pending = live
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("fused graph has a cycle or a missing input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    used = {i for n in ordered for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


FUSIONS = ("attention", "projections", "pooling")


def fuse_model(
    model: Any, *, mask_input: str = "attention_mask", fusions: Iterable[str] = FUSIONS
) -> dict[str, int]:
    """Rewrite ``model`` (an ``onnx.ModelProto`` after the int8 rewrite) in place; return
    how many of each fusion were made (all zero: untouched)."""
    from onnx import helper

    wanted = set(fusions)
    counts = dict.fromkeys(FUSIONS, 0)
    if mask_input not in {i.name for i in model.graph.input}:
        return counts
    g = _Graph(model)
    replaced, dropped, extra = _fuse_attention(g, mask_input) if "attention" in wanted else ([], set(), [])
    counts["attention"] = len(replaced)
    _splice(model.graph, replaced, dropped, extra)
    g = _Graph(model)
    proj, proj_dropped, added = _fuse_projections(g) if "projections" in wanted else ([], set(), [])
    counts["projections"] = len(proj)
    model.graph.initializer.extend(added)
    _splice(model.graph, proj, proj_dropped, [])
    pooled = _pool(_Graph(model), mask_input) if "pooling" in wanted else None
    if pooled is not None:
        nodes, output = pooled
        model.graph.node.extend(nodes)
        del model.graph.output[:]
        model.graph.output.append(output)
        counts["pooling"] = 1
    if not any(counts.values()):
        return counts
    _prune(model)
    if not any(op.domain == _MS for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS, 1))
    return counts
