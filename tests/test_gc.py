"""Garbage collection: the library leaves the host's collector alone, ``freeze_gc`` is an
explicit opt-in, the proxy's own process freezes what startup built (``create_app`` in a
host does not), and importing cacheback keeps structlog (and rich) out of the heap."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy_helpers import chat_body, proxy_config, proxy_process, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache
from cacheback.adapters.proxy import parse_args
from cacheback.adapters.proxy._gc import REFREEZE_AFTER


def _run(code: str) -> Any:
    """``code`` in a fresh interpreter; its last stdout line as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_and_using_the_library_leaves_the_collector_alone(tmp_path: Path) -> None:
    found = _run(
        f"""
        import gc, json, sys
        gc.set_threshold(1234, 5, 6)  # the host's own settings
        import anyio
        import cacheback
        from cacheback import AsyncSemanticCache

        async def main():
            async with AsyncSemanticCache(cache_dir={str(tmp_path)!r}, embedder=None) as cache:
                await cache.lookup("What is the capital of France?")

        anyio.run(main)
        print(json.dumps({{
            "threshold": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
            "enabled": gc.isenabled(),
            "structlog": "structlog" in sys.modules,
            "rich": "rich" in sys.modules,
        }}))
        """
    )
    assert found == {
        "threshold": [1234, 5, 6],
        "frozen": 0,
        "enabled": True,
        # Imported only when a log event is emitted: ~7.5k objects every full collection
        # would walk otherwise.
        "structlog": False,
        "rich": False,
    }


def test_freeze_gc_is_an_explicit_opt_in() -> None:
    found = _run(
        """
        import gc, json
        import cacheback
        before = gc.get_freeze_count()
        frozen = cacheback.freeze_gc()
        print(json.dumps({"before": before, "frozen": frozen, "count": gc.get_freeze_count(),
                          "tracked_left": len(gc.get_objects())}))
        """
    )
    assert found["before"] == 0
    assert found["frozen"] == found["count"] > 10_000  # the interpreter, cacheback and its imports
    assert found["tracked_left"] < found["frozen"] // 10  # what a full collection still walks


@pytest.mark.anyio
async def test_an_engine_in_this_process_does_not_freeze_or_retune(embedder: Any, tmp_path: Path) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    async with AsyncSemanticCache(cache_dir=tmp_path, embedder=embedder) as cache:
        await cache.populate("How do I sort a list?", "sorted(xs)")
        assert await cache.lookup("How can I sort a list?") == "sorted(xs)"
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)


def test_the_gc_freeze_option() -> None:
    assert parse_args([], {}).gc_freeze is None  # decided by who runs the app
    assert parse_args(["--gc-freeze"], {}).gc_freeze is True
    assert parse_args(["--no-gc-freeze"], {"CACHEBACK_PROXY_GC_FREEZE": "1"}).gc_freeze is False
    assert parse_args([], {"CACHEBACK_PROXY_GC_FREEZE": "off"}).gc_freeze is False
    assert parse_args([], {"CACHEBACK_PROXY_GC_FREEZE": "true"}).gc_freeze is True


_KEY = {"Authorization": "Bearer sk-caller-key"}


def _frozen_metric(text: str) -> int:
    line = next(x for x in text.splitlines() if x.startswith("cacheback_gc_frozen_objects{"))
    return int(line.rsplit(" ", 1)[1])


def test_create_app_in_a_host_does_not_freeze(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    frozen = gc.get_freeze_count()
    config = proxy_config(fake, cache_dir)
    with (
        running_proxy(config, embedder) as px,
        httpx.Client(base_url=px.base_url, headers=_KEY, timeout=30) as http,
    ):
        assert http.post("/v1/chat/completions", json=chat_body("What is a proxy?")).status_code == 200
        metrics = http.get("/metrics").text
        assert 'cacheback_gc_collections_total{worker="' in metrics
        assert _frozen_metric(metrics) == frozen
    assert gc.get_freeze_count() == frozen


def test_create_app_freezes_when_asked_and_once_more_after_the_first_requests(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    assert gc.get_freeze_count() == 0
    try:
        config = proxy_config(fake, cache_dir, gc_freeze=True)
        with (
            running_proxy(config, embedder) as px,
            httpx.Client(base_url=px.base_url, headers=_KEY, timeout=30) as http,
        ):
            assert px.app is not None
            proxy = px.app.state.proxy
            # (Frozen objects that die leave the count: it can only be read as "about".)
            assert proxy.gc.freezes == 1 and proxy.gc.frozen >= gc.get_freeze_count() > 10_000
            for i in range(REFREEZE_AFTER):
                resp = http.post("/v1/chat/completions", json=chat_body(f"Question {i % 3}?"))
                assert resp.status_code == 200
            assert proxy.gc.served >= REFREEZE_AFTER and proxy.gc.freezes == 2
            assert _frozen_metric(http.get("/metrics").text) > 10_000
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_cacheback_proxy_freezes_its_own_process(fake: FakeProvider, cache_dir: Path, tmp_path: Path) -> None:
    with proxy_process(fake, cache_dir, tmp_path) as px:
        assert _frozen_metric(httpx.get(f"{px.base_url}/metrics", timeout=30).text) > 10_000
    with proxy_process(fake, cache_dir, tmp_path, "--no-gc-freeze") as px:
        assert _frozen_metric(httpx.get(f"{px.base_url}/metrics", timeout=30).text) == 0
