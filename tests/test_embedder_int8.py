"""int8 compute for the packaged MiniLM: the graph rewrite and what it changes in the vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from structlog.testing import capture_logs

from cacheback.adapters.embedders import MiniLMEmbedder, _minilm, load_default_embedder
from cacheback.adapters.embedders._cpu_kernels import resolved_compute
from cacheback.adapters.embedders._int8 import rewrite_int8_weights
from cacheback.core._errors import ConfigError
from cacheback.core._settings import Settings

QUESTIONS = [
    "How do I reverse a list in Python?",
    "What's the way to reverse a Python list?",
    "What is the best time of year to plant tomatoes?",
    "Explain how TCP congestion control reacts to packet loss on a long fat network link.",
    "hi",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
    "How many moons does Jupiter have?",
    "Translate 'good morning' into French, please.",
]


@pytest.fixture(scope="module")
def float_embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder(compute="float32")


@pytest.fixture(scope="module")
def int8_embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder(compute="int8", intra_op_threads=1)


# -- on the real model ---------------------------------------------------------


def test_int8_embedder_computes_in_int8(int8_embedder: MiniLMEmbedder) -> None:
    int8_embedder.load()
    assert int8_embedder.describe()["compute"] == "int8"
    assert int8_embedder.describe()["compute_setting"] == "int8"


def test_the_default_runs_the_kernel_this_cpu_is_fast_at(embedder: MiniLMEmbedder) -> None:
    # "auto": int8 only where the CPU has 8-bit dot-product instructions (_cpu_kernels).
    embedder.load()
    expected = resolved_compute("auto")
    assert expected in ("int8", "float32")
    assert embedder.describe()["compute_setting"] == "auto"
    assert embedder.describe()["compute"] == expected
    other = "float32" if expected == "int8" else "int8"
    assert embedder.describe()[f"{expected}_model_file"] is not None  # the kept, rewritten graph
    assert embedder.describe()[f"{other}_model_file"] is None


def test_int8_vectors_follow_the_float_ones(
    int8_embedder: MiniLMEmbedder, float_embedder: MiniLMEmbedder
) -> None:
    fast, exact = int8_embedder.embed(QUESTIONS), float_embedder.embed(QUESTIONS)
    assert float_embedder.describe()["compute"] == "float32"
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # Same direction per question, and pairwise similarities (what the thresholds judge)
    # move by less than the 0.0075 measured over the evaluation questions, plus slack.
    assert float(np.min(np.sum(fast * exact, axis=1))) > 0.998
    drift = np.abs(fast @ fast.T - exact @ exact.T)
    assert float(drift.max()) < 0.01
    assert not np.array_equal(fast, exact)  # it really is another computation


def test_batched_and_single_int8_vectors_agree(int8_embedder: MiniLMEmbedder) -> None:
    together = int8_embedder.embed(QUESTIONS)
    alone = np.vstack([int8_embedder.embed([q]) for q in QUESTIONS])
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.999


def test_settings_and_env_choose_the_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().embed_compute == "auto"
    assert Settings.from_env({"CACHEBACK_EMBED_COMPUTE": "float32"}).embed_compute == "float32"
    assert Settings.from_env({"CACHEBACK_EMBED_COMPUTE": "int8"}).embed_compute == "int8"
    with pytest.raises(ConfigError, match="embed_compute"):
        Settings(embed_compute="fp16")
    with pytest.raises(ConfigError, match="compute must be one of"):
        MiniLMEmbedder(compute="fp16")
    chosen = load_default_embedder(Settings(embed_compute="float32"), load=True)
    assert isinstance(chosen, MiniLMEmbedder) and chosen.describe()["compute"] == "float32"


# -- the rewrite on small graphs -----------------------------------------------


def _weight(
    graph_inits: list[Any], nodes: list[Any], name: str, q: np.ndarray[Any, Any], scale: np.ndarray[Any, Any]
) -> str:
    graph_inits += [numpy_helper.from_array(q, f"{name}_q"), numpy_helper.from_array(scale, f"{name}_s")]
    nodes += [
        helper.make_node("Cast", [f"{name}_q"], [f"{name}_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}_f", f"{name}_s"], [name]),
    ]
    return name


def _toy_model(k: int, n: int, rng: np.random.Generator) -> onnx.ModelProto:
    """ids -> Gather(int8 table) -> MatMul(int8 weight): the two patterns the rewrite knows."""
    inits: list[Any] = []
    nodes: list[Any] = []
    table = _weight(
        inits, nodes, "table",
        rng.integers(-127, 128, (50, k), dtype=np.int8), rng.uniform(0.001, 0.01, (50, 1)).astype(np.float32),
    )
    w = _weight(
        inits, nodes, "w",
        rng.integers(-127, 128, (k, n), dtype=np.int8), rng.uniform(0.001, 0.01, (1, n)).astype(np.float32),
    )
    nodes += [
        helper.make_node("Gather", [table, "ids"], ["h"], axis=0),
        helper.make_node("MatMul", ["h", w], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, None, n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model: onnx.ModelProto, ids: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"ids": ids})[0])


def test_rewrite_keeps_the_weights_and_the_result() -> None:
    rng = np.random.default_rng(7)
    model = _toy_model(64, 24, rng)
    ids = rng.integers(0, 50, (1, 9), dtype=np.int64)
    before = _run(model, ids)
    assert rewrite_int8_weights(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert "MatMulNBits" in ops and "Cast" in ops  # the cast now acts on gathered rows only
    # No float copy of either weight is left in the graph.
    floats = [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT]
    assert all(name.endswith(("_s", "scale")) for name in floats)
    packed = next(i for i in model.graph.initializer if i.name == "w_q.nbits")
    fresh = _toy_model(64, 24, np.random.default_rng(7))
    original = numpy_helper.to_array(next(i for i in fresh.graph.initializer if i.name == "w_q"))
    assert np.array_equal(numpy_helper.to_array(packed).reshape(24, 64).astype(np.int16) - 128, original.T)
    after = _run(model, ids)
    rel = np.abs(after - before).max() / np.abs(before).max()
    assert rel < 0.02  # int8 activations, per block of 32


def test_rewrite_leaves_what_it_cannot_map() -> None:
    model = _toy_model(40, 8, np.random.default_rng(1))  # 40 is no multiple of the block
    gather_only = rewrite_int8_weights(model)
    assert gather_only == 1
    assert "MatMulNBits" not in [n.op_type for n in model.graph.node]
    plain = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "plain",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        )
    )
    assert rewrite_int8_weights(plain) == 0


# -- the int8 model kept as a file ------------------------------------------------


def test_int8_model_file_is_built_once_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, int8_embedder: MiniLMEmbedder
) -> None:
    from cacheback.adapters.embedders import _int8_file

    first = MiniLMEmbedder(model_cache=tmp_path, compute="int8")
    first.load()
    kept = first.describe()["int8_model_file"]
    assert kept is not None and Path(kept).parent == tmp_path
    assert Path(kept + ".sha256").read_text().split()[0] == _minilm.sha256_file(Path(kept))
    builds: list[Path] = []
    real = _int8_file.build_int8_model
    monkeypatch.setattr(_int8_file, "build_int8_model", lambda src: builds.append(src) or real(src))
    second = MiniLMEmbedder(model_cache=tmp_path, compute="int8")
    vectors = second.embed(QUESTIONS)
    assert builds == []  # opened from the file, no rewrite (and no onnx import) needed
    assert second.describe()["compute"] == "int8"
    assert np.allclose(vectors, int8_embedder.embed(QUESTIONS), atol=1e-5)


def test_a_damaged_int8_model_file_is_rebuilt(tmp_path: Path) -> None:
    MiniLMEmbedder(model_cache=tmp_path, compute="int8").load()
    (kept,) = tmp_path.glob("*.onnx")
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0xFF
    kept.write_bytes(bytes(data))
    with capture_logs() as logs:
        again = MiniLMEmbedder(model_cache=tmp_path, compute="int8")
        again.load()
    assert any("does not match its checksum" in str(e.get("event")) for e in logs)
    assert again.describe()["compute"] == "int8"
    assert _minilm.sha256_file(kept) == kept.with_name(kept.name + ".sha256").read_text().split()[0]


def test_without_a_writable_model_cache_the_rewrite_stays_in_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("not a directory")
    for setting in (blocked / "models", None):
        emb = MiniLMEmbedder(model_cache=setting, compute="int8")
        emb.load()
        assert emb.describe()["compute"] == "int8"
        assert emb.describe()["int8_model_file"] is None


def test_model_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACHEBACK_MODEL_CACHE", str(tmp_path / "m"))
    assert _minilm.model_cache_dir("auto") == tmp_path / "m"
    monkeypatch.delenv("CACHEBACK_MODEL_CACHE")
    monkeypatch.setenv("CACHEBACK_CACHE_DIR", str(tmp_path / "c"))
    assert _minilm.model_cache_dir("auto") == tmp_path / "c" / "models"
    assert _minilm.model_cache_dir(None) is None
