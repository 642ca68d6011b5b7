"""Stats and /health say which text embedder runs and, when none or a fallback does, why.

The loader is made to fail for real: onnxruntime cannot be imported (``sys.modules``
blocks it) and the model directory is empty, so the NumPy fallback cannot load either.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from _client_helpers import openai_args, user
from _proxy_helpers import proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache, CachedOpenAI
from cacheback.adapters._dashboard_view import embedders
from cacheback.core._embedder_status import NOT_GIVEN

pytestmark = pytest.mark.anyio


@pytest.fixture
def no_embedder_can_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Block onnxruntime and point the model at an empty directory; returns it."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # every import of it now fails
    empty = tmp_path / "no-model"
    empty.mkdir()
    return empty


def _says_both_failures(reason: Any, model_dir: Path) -> None:
    assert isinstance(reason, str), reason
    assert reason.startswith("minilm: onnxruntime not importable: ModuleNotFoundError"), reason
    assert "the NumPy fallback failed too" in reason and str(model_dir) in reason, reason


async def test_the_engine_says_why_no_embedder_runs(cache_dir: Path, no_embedder_can_run: Path) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, model_dir=no_embedder_can_run) as cache:
        stats = await cache.stats()
        assert stats["embedder"] is None  # as before: none runs
        _says_both_failures(stats["embedder_reason"], no_embedder_can_run)
        assert cache.engine.embedder_reason() == stats["embedder_reason"]
        # exact matches only, as the reason says
        await cache.populate("What is the tallest mountain on Mars?", "Olympus Mons")
        assert (await cache.lookup_detailed("What is the tallest mountain on Mars?")).tier == "exact"
        assert not (await cache.lookup_detailed("Which is the highest mountain on Mars?")).hit


async def test_missing_model_files_are_the_reason(cache_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-model-dir"
    empty.mkdir()
    async with AsyncSemanticCache(cache_dir=cache_dir, model_dir=empty) as cache:
        stats = await cache.stats()
    assert stats["embedder"] is None
    reason = stats["embedder_reason"]
    assert isinstance(reason, str), reason
    assert reason.startswith("minilm: ModelNotFound: no embedding model in"), reason
    assert str(empty) in reason and "missing model.onnx, tokenizer.json" in reason, reason
    assert "NumPy" not in reason  # it would read the same missing files: not tried


async def test_no_reason_when_the_embedder_runs_and_one_when_none_was_given(
    cache_dir: Path, embedder: Any
) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        stats = await cache.stats()
        assert stats["embedder"]["name"] == "minilm" and stats["embedder_reason"] is None
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=None) as cache:
        stats = await cache.stats()
        assert stats["embedder"] is None and stats["embedder_reason"] == NOT_GIVEN


def test_a_client_says_why_through_cache_stats(
    fake: FakeProvider, cache_dir: Path, no_embedder_can_run: Path
) -> None:
    # embedder="auto": loaded ahead on a thread as the client is constructed (_preload.py)
    args = openai_args(fake, cache_dir, "auto", model_dir=no_embedder_can_run)
    with CachedOpenAI(**args) as client:
        first = client.chat.completions.create(model="gpt-4o", messages=user("Name a noble gas"))
        again = client.chat.completions.create(model="gpt-4o", messages=user("Name a noble gas"))
        assert again.choices[0].message.content == first.choices[0].message.content
        stats = client.cache.stats
    assert fake.count() == 1  # the repeat was an exact hit
    assert stats["embedder"] is None
    _says_both_failures(stats["embedder_reason"], no_embedder_can_run)


def test_the_proxy_says_why_in_health_and_stats(
    fake: FakeProvider, cache_dir: Path, no_embedder_can_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHEBACK_MODEL_DIR", str(no_embedder_can_run))
    with running_proxy(proxy_config(fake, cache_dir), "auto") as px, px.http() as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["ready"] is True
        body = health.json()
        assert body["status"] == "ok" and body["embedder"] is None
        _says_both_failures(body["embedder_reason"], no_embedder_can_run)
        chat = {"model": "gpt-4o", "messages": user("Name a noble gas")}
        first = http.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer sk-x"})
        assert first.status_code == 200 and first.headers["x-cacheback-tier"] == "upstream"
        stats = http.get("/v1/cache/stats", headers={"authorization": "Bearer sk-x"}).json()
        assert stats["embedder"] is None and stats["embedder_reason"] == body["embedder_reason"]


def test_the_dashboard_and_cacheback_stats_show_the_reason_as_a_fault() -> None:
    reason = "minilm: ModelNotFound: no embedding model in models: missing model.onnx"
    rows = embedders(None, {}, True, reason)
    assert rows == [{"name": "text", "model": None, "dim": None, "compute": reason, "ok": False}]
    assert embedders(None, {}, True, NOT_GIVEN) == []  # none wanted: no fault
    running = {"name": "minilm", "model": "m", "dim": 384, "compute": "int8"}
    assert [r["name"] for r in embedders(running, {}, True, None)] == ["minilm"]
