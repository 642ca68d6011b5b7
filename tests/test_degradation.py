"""A store that breaks never fails a call or a stats read: the cache reports itself degraded
with the reason, requests pass through, and the engine gets the store back without a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _client_helpers import openai_args, user
from _proxy_helpers import chat_body, free_port, proxy_config, proxy_process, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache, CachedOpenAI
from cacheback.engine._recovery import MAX_RETRY_S, retry_delay

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk-degradation-test"}


def damage(cache_dir: Path) -> None:
    """Overwrite the database's pages (all but the header page) and its WAL with garbage."""
    db = cache_dir / "cache.db"
    for path, keep in ((db, 4096), (db.with_name("cache.db-wal"), 32)):
        size = path.stat().st_size if path.exists() else 0
        if size > keep:
            with path.open("r+b") as fh:
                fh.seek(keep)
                fh.write(os.urandom(size - keep))


def gauge(metrics: str, name: str) -> str | None:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics, re.M)
    return found.group(1) if found else None


def moved_aside(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if ".corrupt-" in p.name)


def test_retry_delay_backs_off_to_a_ceiling() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(50) == MAX_RETRY_S


async def test_a_store_damaged_at_run_time_degrades_then_comes_back(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir, embedder=embedder) as cache:
        for i in range(40):
            await cache.populate(f"Filler question number {i} about rivers?", f"filler {i}")
        await cache.flush()
        damage(cache_dir)
        got = await cache.lookup_detailed("What is the longest river in Europe?")  # never raises
        assert got.hit is False
        stats = await cache.stats()  # never raises either
        assert stats["cache"]["status"] == "degraded", stats["cache"]
        assert "malformed" in stats["cache"]["reason"] or "not a database" in stats["cache"]["reason"]
        deadline = time.monotonic() + 20
        while (await cache.stats())["cache"]["status"] != "ok":
            assert time.monotonic() < deadline, (await cache.stats())["cache"]
            await anyio.sleep(0.1)
        stats = await cache.stats()
        assert stats["cache"]["recoveries"] == 1 and stats["entries"] == 0  # a fresh database
        assert any(name.startswith("cache.db.corrupt-") for name in moved_aside(cache_dir))
        entry_id = await cache.populate("What is the longest river in Europe?", "The Volga.")
        got = await cache.lookup_detailed("What is the longest river in Europe?")
        assert got.tier == "exact" and got.entry_id == entry_id


def test_the_proxy_reports_a_broken_store_and_recovers(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px, px.http(headers=AUTH) as http:
        for i in range(20):
            http.post("/v1/chat/completions", json=chat_body(f"Proxy filler {i}: how far is town {i}?"))
        time.sleep(0.2)
        damage(cache_dir)
        body = chat_body("Which ocean is the deepest?")
        first = http.post("/v1/chat/completions", json=body)
        assert first.status_code == 200
        stats = http.get("/v1/cache/stats")
        assert stats.status_code == 200
        health = http.get("/health")
        assert health.status_code == 200
        reported = [stats.json()["cache"], health.json()["cache"]]
        if all(r["status"] == "ok" for r in reported):  # already reopened: it was that quick
            assert stats.json()["cache"]["recoveries"] >= 1
        else:
            assert health.json()["status"] == "degraded" and health.json()["cache"]["reason"]
        deadline = time.monotonic() + 20
        while http.get("/health").json()["cache"]["status"] != "ok":
            assert time.monotonic() < deadline, http.get("/health").json()
            time.sleep(0.1)
        assert http.get("/health").json()["status"] == "ok"
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        assert http.post("/v1/chat/completions", json=body).headers["x-cacheback-tier"] == "exact"
    assert moved_aside(cache_dir)


def test_the_proxy_starts_in_pass_through_when_its_cache_dir_is_unusable(
    fake: FakeProvider, cache_dir: Path, tmp_path: Path
) -> None:
    (cache_dir / "cache.db").mkdir()  # a directory where the database should be
    with (
        proxy_process(fake, cache_dir, tmp_path) as px,
        httpx.Client(base_url=px.base_url, timeout=30, headers=AUTH) as http,
    ):
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["ready"] is True
        assert "cache.db" in health["cache"]["reason"], health
        body = chat_body("How many strings does a violin have?")
        for _ in range(2):  # passed through: the second is not a hit
            resp = http.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200 and resp.headers["x-cacheback-tier"] == "upstream"
        assert http.get("/v1/cache/stats").json()["cache"]["status"] == "degraded"
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and gauge(metrics.text, "cacheback_cache_degraded") == "1"
        assert gauge(metrics.text, "cacheback_unwritten_answers") == "1"
        assert "PASS-THROUGH" in px.log()
        assert http.get("/v1/cache/stats").json()["unwritten"]["waiting"] == 1  # kept in memory
        # Fixed while it runs: the cache comes back without a restart, and the answer given
        # meanwhile is written then.
        (cache_dir / "cache.db").rmdir()
        deadline = time.monotonic() + 30
        while http.get("/health").json()["status"] != "ok" or unwritten(http) != 0:
            assert time.monotonic() < deadline, http.get("/health").json()
            time.sleep(0.2)
        assert http.post("/v1/chat/completions", json=body).headers["x-cacheback-tier"] == "exact"
        metrics = http.get("/metrics")
        assert gauge(metrics.text, "cacheback_cache_degraded") == "0"
        assert gauge(metrics.text, "cacheback_unwritten_answers") == "0"
    assert fake.count("chat") == 2


def unwritten(http: httpx.Client) -> int:
    return int(http.get("/v1/cache/stats").json()["unwritten"]["waiting"])


@pytest.mark.parametrize("how", ["flag", "env"])
def test_require_cache_fails_fast(fake: FakeProvider, cache_dir: Path, how: str) -> None:
    (cache_dir / "cache.db").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEBACK_")}
    args = ["--require-cache"] if how == "flag" else []
    if how == "env":
        env["CACHEBACK_REQUIRE_CACHE"] = "1"
    cmd = [
        sys.executable, "-m", "cacheback.proxy", "--port", str(free_port()), "--cache-dir", str(cache_dir),
        "--upstream-openai-base-url", fake.openai_base_url, "--log-level", "warning", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert "require-cache" in done.stdout + done.stderr


def test_sdk_stats_never_raise_for_an_unusable_cache_dir(
    fake: FakeProvider, tmp_path: Path, embedder: Any
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with CachedOpenAI(**openai_args(fake, blocker / "cache", embedder)) as client:
        stats = client.cache.stats
        assert stats["cache"]["status"] == "degraded" and stats["cache"]["reason"]
        for _ in range(2):
            resp = client.chat.completions.create(model="gpt-4o", messages=user("Why is the sky blue?"))
            assert resp.cacheback.tier == "upstream"  # type: ignore[attr-defined]
    assert fake.count("chat") == 2
