"""The NumPy fallback for MiniLM: same weights, same vectors, used when onnxruntime cannot run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from _proxy_helpers import chat_body, proxy_process
from fake_provider import FakeProvider

from cacheback import SemanticCache
from cacheback.adapters.embedders import MiniLMEmbedder, load_default_embedder
from cacheback.adapters.embedders._bert_weights import bert_weights
from cacheback.adapters.embedders._numpy_bert import erf
from cacheback.adapters.embedders._numpy_minilm import NumpyMiniLMEmbedder
from cacheback.adapters.embedders._onnx_reader import OnnxGraph, read_onnx
from cacheback.core._errors import EmbedderError

# Our own sentences: questions, commands, chatter, code, other languages, one long paragraph,
# and lengths from 1 token up, so one batch pads rows of very different lengths.
SENTENCES = [
    "hi",
    "Why?",
    "What is the capital of Australia?",
    "How do I merge two dictionaries in Python?",
    "Best way to merge dicts in python 3",
    "Can you recommend a good book about the history of mathematics?",
    "Translate 'good morning' into Japanese.",
    "Wie spät ist es in Berlin?",
    "¿Cuál es la montaña más alta de Sudamérica?",
    "SELECT name FROM users WHERE age > 30 ORDER BY name;",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "My laptop fan is loud after the update, what can I do?",
    "Summarise the plot of a heist movie in three sentences.",
    "What are the side effects of drinking too much coffee?",
    "How many legs does a spider have?",
    "Is a tomato a fruit or a vegetable?",
    "Write a haiku about autumn rain on a tin roof.",
    "Explain the difference between TCP and UDP.",
    "What's the difference between UDP and TCP?",
    "How long should I boil an egg for a runny yolk?",
    "Give me five names for a grey cat.",
    "Which planet has the most moons?",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "When did the Berlin Wall fall?",
    "Why is the sky blue during the day and red at sunset?",
    "Recommend a beginner workout routine without equipment.",
    "How do vaccines train the immune system?",
    "What does HTTP status 418 mean?",
    "Tips for keeping basil alive indoors",
    "How can I improve my sleep quality?",
    "Generate a regex that matches an ISO 8601 date.",
    "Is it safe to update the BIOS on a laptop running on battery?",
    "What is the time complexity of binary search?",
    "Name three composers of the Baroque period.",
    "Describe photosynthesis to a ten-year-old.",
    "What rhymes with orange?",
    "Plan a two-day trip to Lisbon on a budget.",
    "🙂🙂🙂 thanks!!!",
    "1234567890",
    "The quick brown fox jumps over the lazy dog.",
    "How do I undo the last git commit but keep my changes?",
    "Revert last commit in git without losing work",
    "What are good questions to ask at the end of a job interview?",
    "How do noise-cancelling headphones work?",
    "Can dogs eat grapes?",
    "What is the population of Iceland?",
    "Explain recursion using a real-world analogy.",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
    (
        "Our team is migrating a monolith to services; the billing module shares tables with the "
        "inventory module, reports join across both, and nightly jobs lock rows for minutes. How "
        "should we split the database without downtime, and what should we measure before and after?"
    ),
    "ok",
]


@pytest.fixture(scope="module")
def numpy_embedder() -> NumpyMiniLMEmbedder:
    emb = NumpyMiniLMEmbedder(reason="test")
    emb.load()
    return emb


@pytest.fixture(scope="module")
def float32_embedder() -> MiniLMEmbedder:
    """onnxruntime computing the packaged weights in float32 (the graph as it is)."""
    emb = MiniLMEmbedder(intra_op_threads=1, compute="float32", model_cache=None)
    emb.load()
    return emb


def test_numpy_matches_onnxruntime_float32(
    numpy_embedder: NumpyMiniLMEmbedder, float32_embedder: MiniLMEmbedder
) -> None:
    assert len(SENTENCES) == 50
    reference = float32_embedder.embed(SENTENCES)
    batched = numpy_embedder.embed(SENTENCES)  # padded runs: the attention mask matters
    single = np.vstack([numpy_embedder.embed([s]) for s in SENTENCES[:10]])
    assert batched.shape == (50, 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    cosines = (batched * reference).sum(axis=1)
    assert cosines.min() >= 0.999, f"min cosine {cosines.min():.6f} at {SENTENCES[int(cosines.argmin())]!r}"
    assert (single * batched[:10]).sum(axis=1).min() >= 0.9999
    # The neighbourhoods agree too: the same pairs are close in both spaces.
    assert np.abs(batched @ batched.T - reference @ reference.T).max() < 0.005


def test_blas_runs_one_thread_without_spinning_siblings(numpy_embedder: NumpyMiniLMEmbedder) -> None:
    from threadpoolctl import threadpool_info

    if any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        pytest.skip("the environment sets the BLAS thread count; the embedder leaves it alone")
    assert numpy_embedder.describe()["blas_threads"] == 1
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_numpy_pairs_decide_like_onnxruntime(numpy_embedder: NumpyMiniLMEmbedder) -> None:
    default = MiniLMEmbedder(intra_op_threads=1, compute="int8")  # the kernel furthest from NumPy's
    pairs = [(SENTENCES[3], SENTENCES[4]), (SENTENCES[17], SENTENCES[18]), (SENTENCES[40], SENTENCES[41])]
    unrelated = [(SENTENCES[2], SENTENCES[13]), (SENTENCES[9], SENTENCES[44])]
    for a, b in pairs + unrelated:
        ours = float(np.dot(*numpy_embedder.embed([a, b])))
        theirs = float(np.dot(*default.embed([a, b])))
        assert abs(ours - theirs) < 0.01, (a, b, ours, theirs)


def test_reader_matches_the_onnx_package(numpy_embedder: NumpyMiniLMEmbedder) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = Path(numpy_embedder.describe()["model_path"])
    ours = read_onnx(path)
    model = onnx.load(str(path))
    theirs = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(ours.initializers) == set(theirs)
    for name, array in theirs.items():
        assert ours.initializers[name].dtype == array.dtype and np.array_equal(ours.initializers[name], array)
    assert [(n.op_type, n.inputs, n.outputs) for n in ours.nodes] == [
        (n.op_type, list(n.input), list(n.output)) for n in model.graph.node
    ]


def test_weights_are_dequantized_as_the_graph_does(numpy_embedder: NumpyMiniLMEmbedder) -> None:
    graph = read_onnx(Path(numpy_embedder.describe()["model_path"]))
    weights = bert_weights(graph)
    assert weights.layers == 6 and weights.epsilon == pytest.approx(1e-12)
    query = weights["encoder.layer.0.attention.self.query.weight"]
    assert query.shape == (384, 384) and query.dtype == np.float32
    # That weight is Mul(Cast(q), scale) in the graph; find it and compare.
    producer = {o: n for n in graph.nodes for o in n.outputs}
    add = next(n for n in graph.nodes if n.inputs[-1:] == ["inner.encoder.layer.0.attention.self.query.bias"])
    mul = producer[producer[add.inputs[0]].inputs[1]]
    q = graph.initializers[producer[mul.inputs[0]].inputs[0]]
    scale = graph.initializers[mul.inputs[1]]
    assert q.dtype == np.int8
    assert np.array_equal(query, q.astype(np.float32) * scale)
    assert weights.word.values.dtype == np.int8  # the vocabulary table stays int8 in memory


def test_a_graph_that_is_not_bert_is_refused() -> None:
    empty = OnnxGraph(nodes=[], initializers={"w": np.zeros((2, 2), np.float32)})
    with pytest.raises(EmbedderError, match="not a BERT encoder"):
        bert_weights(empty)


def test_unreadable_model_file_is_an_embedder_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x3a\xff\xff\xff\xff\x0f")  # field 7, a length far past the end
    with pytest.raises(EmbedderError, match="not a readable ONNX model"):
        read_onnx(bad)


def test_erf_is_accurate() -> None:
    import math

    xs = np.linspace(-6, 6, 2001, dtype=np.float32)
    expected = np.array([math.erf(float(x)) for x in xs])
    # 1.5e-7 from the formula, plus float32 rounding (one ulp of 1.0 is 1.2e-7).
    assert np.abs(erf(xs) - expected).max() < 5e-7


def test_fallback_when_onnxruntime_is_not_importable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    emb = load_default_embedder(model_cache=None, load=True)
    assert isinstance(emb, NumpyMiniLMEmbedder)
    described = emb.describe()
    assert described["runtime"] == "numpy" and described["loaded"] is True
    assert described["reason"].startswith("onnxruntime not importable: ModuleNotFoundError")
    warned = [r for r in caplog.records if r.name == "cacheback.embedder" and r.levelname == "WARNING"]
    assert any("embedder_fallback" in r.getMessage() for r in warned), caplog.text
    with SemanticCache(cache_dir=tmp_path / "c", embedder=emb) as cache:
        cache.populate("How do I undo the last git commit?", "git reset --soft HEAD~1")
        hit = cache.lookup_detailed("How can I undo my last git commit?")
        assert hit.hit and hit.tier == "verbatim" and hit.answer == "git reset --soft HEAD~1"
        assert not cache.lookup_detailed("What is the population of Iceland?").hit
        assert cache.stats["embedder"]["runtime"] == "numpy"
        assert cache.stats["embedder_reason"] == described["reason"]  # why the fallback runs


def test_fallback_when_onnxruntime_cannot_load_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cacheback.adapters.embedders import _minilm

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise EmbedderError("onnxruntime could not load model.onnx: simulated")

    monkeypatch.setattr(_minilm, "open_session", broken)
    emb = load_default_embedder(compute="float32", model_cache=None, load=True)
    assert isinstance(emb, NumpyMiniLMEmbedder)
    assert emb.describe()["reason"] == "onnxruntime failed: onnxruntime could not load model.onnx: simulated"


_BLOCKER = """\
import sys
sys.modules["onnxruntime"] = None  # every import of onnxruntime in this process fails
"""


@pytest.mark.slow
def test_proxy_without_onnxruntime_serves_semantic_hits(
    fake: FakeProvider, cache_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    with (
        proxy_process(fake, cache_dir, tmp_path, env={"PYTHONPATH": path, "OPENAI_API_KEY": "sk-x"}) as px,
        httpx.Client(base_url=px.base_url, timeout=60) as http,
    ):
        health = http.get("/health").json()
        assert health["embedder"]["name"] == "minilm" and health["embedder"]["runtime"] == "numpy"
        assert health["embedder"]["reason"].startswith("onnxruntime not importable")
        assert health["embedder_reason"] == health["embedder"]["reason"]
        first = http.post("/v1/chat/completions", json=chat_body("What is the speed of light?"))
        assert first.status_code == 200 and first.headers["x-cacheback-tier"] == "upstream"
        deadline = time.monotonic() + 20
        while http.get("/v1/cache/stats").json()["entries"] < 1:
            assert time.monotonic() < deadline, "the first answer was never stored"
            time.sleep(0.05)
        again = http.post("/v1/chat/completions", json=chat_body("What's the speed of light?"))
        assert again.status_code == 200 and again.headers["x-cacheback-tier"] == "verbatim", px.log()[-3000:]
        assert (
            again.json()["choices"][0]["message"]["content"]
            == first.json()["choices"][0]["message"]["content"]
        )
        stats = http.get("/v1/cache/stats").json()
        assert stats["embedder"]["runtime"] == "numpy" and stats["embedder"]["compute"] == "float32"
    assert fake.count() == 1
    assert "embedder_fallback" in px.log()


def test_a_huge_text_is_cut_before_the_tokenizer(numpy_embedder: NumpyMiniLMEmbedder) -> None:
    # The model reads 256 tokens at most; what lies beyond them must never be tokenized
    # (tokenizing megabytes takes seconds), and cannot change the vector.
    head = "How do I reverse a linked list in place without extra memory? "
    huge = head * 4 + "filler words that the model never sees " * 100_000  # about 4 MB
    tokenizer = numpy_embedder._load()[1]
    seen: list[int] = []
    original = tokenizer.encode

    class Spy:
        def encode(self, text: str) -> Any:
            seen.append(len(text))
            return original(text)

    numpy_embedder._tokenizer = Spy()  # type: ignore[assignment]
    try:
        vec = numpy_embedder.embed([huge])
    finally:
        numpy_embedder._tokenizer = tokenizer
    assert seen and max(seen) < 10_000
    again = numpy_embedder.embed([huge[: 256 * 16]])
    assert float(vec[0] @ again[0]) > 0.9999
