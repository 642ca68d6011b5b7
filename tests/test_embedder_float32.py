"""float32 compute from a kept file: the fused graph with float MatMuls, same vectors as the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cacheback.adapters.embedders import MiniLMEmbedder, _int8_file, _minilm
from cacheback.adapters.embedders._float32 import dequantize_matmuls, float32_only
from cacheback.adapters.embedders._int8 import rewrite_int8_weights

QUESTIONS = [
    "How do I reverse a list in Python?",
    "What's the way to reverse a Python list?",
    "Explain how TCP congestion control reacts to packet loss on a long fat network link.",
    "hi",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
]


def _toy(k: int, n: int, seed: int) -> onnx.ModelProto:
    """x (float) -> MatMul(Cast(int8 weight) * per-column scale): the pattern the rewrite maps."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-127, 128, (k, n), dtype=np.int8)
    scale = rng.uniform(0.001, 0.01, (1, n)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["w_q"], ["w_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w_f", "w_s"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scale, "w_s")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model: onnx.ModelProto, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def test_dequantized_matmuls_compute_what_the_float_source_computes() -> None:
    source = _toy(64, 24, seed=3)
    x = np.random.default_rng(4).standard_normal((5, 64)).astype(np.float32)
    expected = _run(source, x)
    model = _toy(64, 24, seed=3)
    assert rewrite_int8_weights(model) == 1  # now an 8-bit MatMulNBits
    int8_result = _run(model, x)
    assert dequantize_matmuls(model) == 1 and float32_only(model)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert all(i.data_type == TensorProto.FLOAT for i in model.graph.initializer)  # no 8-bit copy left
    result = _run(model, x)
    assert np.allclose(result, expected, rtol=1e-5, atol=1e-6)
    # ...where the int8 kernel, which also quantizes the activations, is measurably off.
    assert np.abs(int8_result - expected).max() > 10 * np.abs(result - expected).max()


def test_a_matmulnbits_it_cannot_map_stays_and_the_model_is_not_float32_only() -> None:
    model = _toy(64, 24, seed=5)
    rewrite_int8_weights(model)
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    for attr in node.attribute:
        if attr.name == "bits":
            attr.i = 4  # another layout than the rewrite's
    assert dequantize_matmuls(model) == 0
    assert not float32_only(model)


def test_float32_embedder_runs_the_kept_file_and_gives_the_source_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = MiniLMEmbedder(compute="float32", model_cache=tmp_path, intra_op_threads=1)
    vectors = kept.embed(QUESTIONS)
    described = kept.describe()
    assert described["compute"] == "float32" and described["int8_model_file"] is None
    file = Path(described["float32_model_file"])
    assert file.parent == tmp_path and file.name.startswith("minilm-float32-v")
    ops = {n.op_type for n in onnx.load(str(file)).graph.node}
    assert "MatMulNBits" not in ops and "MultiHeadAttention" in ops
    # The source model run as it is (no rewrite at all) gives the same vectors.
    monkeypatch.setattr(_minilm, "derived_session", lambda *a, **k: None)
    plain = MiniLMEmbedder(compute="float32", model_cache=tmp_path, intra_op_threads=1)
    reference = plain.embed(QUESTIONS)
    assert plain.describe()["float32_model_file"] is None
    assert np.allclose(vectors, reference, rtol=0, atol=1e-5)
    monkeypatch.undo()
    # A second embedder opens the file without building it again.
    builds: list[Path] = []
    real = _int8_file.build_float32_model
    monkeypatch.setattr(_int8_file, "build_float32_model", lambda src: builds.append(src) or real(src))
    again = MiniLMEmbedder(compute="float32", model_cache=tmp_path, intra_op_threads=1)
    assert np.allclose(again.embed(QUESTIONS), vectors, rtol=0, atol=1e-6)
    assert builds == [] and again.describe()["float32_model_file"] == str(file)


def test_a_float32_file_that_would_change_the_vectors_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_int8_file, "same_vectors", lambda *a, **k: False)
    emb = MiniLMEmbedder(compute="float32", model_cache=tmp_path, intra_op_threads=1)
    emb.load()
    assert emb.describe()["compute"] == "float32"
    assert emb.describe()["float32_model_file"] is None  # the source runs as it is
    assert not list(tmp_path.glob("minilm-float32-*"))
