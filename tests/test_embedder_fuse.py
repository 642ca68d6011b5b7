"""The fused int8 MiniLM graph (``_fuse``): same vectors on real inference, fewer kernels,
untouched when nothing matches, checked before it is kept."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from structlog.testing import capture_logs

from cacheback.adapters.embedders import MiniLMEmbedder, _fuse, _int8_file, _minilm
from cacheback.adapters.embedders._hashing import sha256_file
from cacheback.adapters.embedders._int8 import rewrite_int8_weights

QUESTIONS = [
    "How do I reverse a list in Python?",
    "hi",
    "Explain how TCP congestion control reacts to packet loss on a long fat network link.",
    "What is the best time of year to plant tomatoes?",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
]


@pytest.fixture(scope="module")
def plain_int8() -> onnx.ModelProto:
    """The packaged model after the int8 rewrite only (what REWRITE_VERSION 1 kept)."""
    model, _, _ = _minilm._packaged_files()
    proto = onnx.load(str(model))
    assert rewrite_int8_weights(proto) > 0
    return proto


def _plain_vectors(proto: onnx.ModelProto, texts: list[str]) -> np.ndarray[Any, Any]:
    """Vectors of ``texts`` from the unfused graph, padded into one batch, pooled in numpy."""
    model, tokenizer_path, sha = _minilm._packaged_files()
    tokenizer = _minilm.verified_tokenizer(model, tokenizer_path, sha, 256)
    encodings = _minilm.encode(tokenizer, texts, 256)
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})[0]
    weights = mask[:, :, None].astype(np.float32)
    return _minilm.l2_normalise((hidden * weights).sum(axis=1) / weights.sum(axis=1))


def test_fusion_rewrites_every_block_of_the_real_model(plain_int8: onnx.ModelProto) -> None:
    fused = onnx.ModelProto()
    fused.CopyFrom(plain_int8)
    counts = _fuse.fuse_model(fused)
    assert counts == {"attention": 6, "projections": 6, "pooling": 1}
    ops = collections.Counter(n.op_type for n in fused.graph.node)
    assert ops["MultiHeadAttention"] == 6 and ops["MatMulNBits"] == 24  # 36 before: q, k, v now one
    assert ops["Softmax"] == 0 and ops["IsNaN"] == 0 and ops["GatherND"] == 0
    assert [o.name for o in fused.graph.output] == [_fuse.POOLED_OUTPUT]
    # The weights are the same bytes: only concatenated, never re-quantized.
    before = sum(i.ByteSize() for i in plain_int8.graph.initializer if i.data_type == TensorProto.UINT8)
    after = sum(i.ByteSize() for i in fused.graph.initializer if i.data_type == TensorProto.UINT8)
    assert abs(after - before) < 4096
    assert _int8_file.same_vectors(plain_int8.SerializeToString(), fused.SerializeToString())


def test_the_fused_embedder_gives_the_unfused_vectors(plain_int8: onnx.ModelProto, tmp_path: Path) -> None:
    # No length grouping: the rows are padded into one run, so the key padding mask matters.
    emb = MiniLMEmbedder(model_cache=tmp_path, length_grouping=False, intra_op_threads=1, compute="int8")
    fused = emb.embed(QUESTIONS)
    assert emb.describe()["compute"] == "int8"
    assert emb._output == _fuse.POOLED_OUTPUT
    plain = _plain_vectors(plain_int8, QUESTIONS)
    assert np.allclose(fused, plain, rtol=0, atol=1e-5)
    alone = np.vstack([emb.embed([q]) for q in QUESTIONS])
    assert np.allclose(alone, plain, rtol=0, atol=1e-5)


def _graph_without_the_patterns() -> onnx.ModelProto:
    """Two MatMulNBits-free projections of the same input and a 3-D output, no attention_mask."""
    rng = np.random.default_rng(3)
    w1, w2 = (
        helper.make_tensor(f"w{i}", TensorProto.FLOAT, [8, 8], rng.normal(size=64).tolist()) for i in (1, 2)
    )
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["a"]),
            helper.make_node("MatMul", ["x", "w2"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, 8])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_graph_without_the_patterns_is_left_untouched_and_runs() -> None:
    model = _graph_without_the_patterns()
    before = model.SerializeToString()
    assert not any(_fuse.fuse_model(model).values())
    assert model.SerializeToString() == before
    # With an attention_mask input but no attention block: only the pooling applies.
    model.graph.input.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, None]))
    assert _fuse.fuse_model(model) == {"attention": 0, "projections": 0, "pooling": 1}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((1, 3, 8), dtype=np.float32)
    pooled = session.run(None, {"x": x, "attention_mask": np.array([[1, 1, 0]])})[0]
    assert pooled.shape == (1, 8)


def test_a_fusion_that_changes_the_vectors_is_not_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = _fuse.fuse_model

    def wrong_scale(model: Any, **kw: Any) -> dict[str, int]:
        counts = real(model, **kw)
        for node in model.graph.node:
            for attr in node.attribute:
                if node.op_type == "MultiHeadAttention" and attr.name == "scale":
                    attr.f *= 2
        return counts

    monkeypatch.setattr(_fuse, "fuse_model", wrong_scale)
    source, _, _ = _minilm._packaged_files()
    with capture_logs() as logs:
        data = _int8_file.build_int8_model(source)
    assert any("keeping the unfused one" in str(e.get("event")) for e in logs)
    assert data is not None
    kept = onnx.load_from_string(data)
    assert "MultiHeadAttention" not in {n.op_type for n in kept.graph.node}
    assert "MatMulNBits" in {n.op_type for n in kept.graph.node}  # still int8 compute


def test_a_kept_file_of_an_older_recipe_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_int8_file, "REWRITE_VERSION", 1)
    _, _, sha = _minilm._packaged_files()
    old = _int8_file.derived_path(tmp_path, sha)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"an older recipe's model")
    old.with_name(old.name + ".sha256").write_text(f"{sha256_file(old)}  {old.name}\n")
    monkeypatch.undo()
    emb = MiniLMEmbedder(model_cache=tmp_path, compute="int8")
    emb.load()
    kept = Path(emb.describe()["int8_model_file"])
    assert kept != old and f"-v{_int8_file.REWRITE_VERSION}-" in kept.name
    assert emb._output == _fuse.POOLED_OUTPUT
