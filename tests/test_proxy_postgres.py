"""Proxy replicas sharing one cache in PostgreSQL, and a proxy whose database is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from _pg_server import free_port
from _proxy_helpers import chat_body, proxy_config, proxy_process, running_proxy
from fake_provider import FakeProvider

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer sk-caller-one"}


def test_two_proxy_processes_share_one_database(fake: FakeProvider, tmp_path: Path, pg_url: str) -> None:
    with (
        proxy_process(fake, tmp_path / "a", tmp_path, "--store-url", pg_url) as one,
        proxy_process(fake, tmp_path / "b", tmp_path, env={"CACHEBACK_STORE_URL": pg_url}) as two,
        httpx.Client(timeout=30) as http,
    ):
        first = http.post(
            f"{one.base_url}/v1/chat/completions", json=chat_body("Name three primary colours"), headers=AUTH
        )
        assert first.status_code == 200 and first.headers["x-cacheback-tier"] == "upstream"
        calls = fake.count()
        # Written behind by the first replica: the second sees it as soon as it is committed.
        for _ in range(100):
            again = http.post(
                f"{two.base_url}/v1/chat/completions",
                json=chat_body("Name three primary colours"),
                headers=AUTH,
            )
            if again.headers["x-cacheback-tier"] == "exact":
                break
        assert again.headers["x-cacheback-tier"] == "exact"
        assert (
            again.json()["choices"][0]["message"]["content"]
            == first.json()["choices"][0]["message"]["content"]
        )
        assert fake.count() <= calls + 99  # the hit itself never reached the provider
        health = http.get(f"{two.base_url}/health").json()
        assert health["status"] == "ok" and health["cache"]["status"] == "ok"


def test_database_down_at_start_serves_from_the_provider(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    config = proxy_config(fake, cache_dir, store_url=dead)
    with running_proxy(config, embedder) as px, px.http() as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and "Connect" in health.json()["cache"]["reason"]
        reply = http.post("/v1/chat/completions", json=chat_body("Is the cache up?"), headers=AUTH)
        assert reply.status_code == 200
        assert reply.headers["x-cacheback-tier"] == "upstream"
        assert reply.headers.get("x-cacheback-degraded")
        for _ in range(3):  # repeats may come from the replica's memory; none fails
            assert (
                http.post("/v1/chat/completions", json=chat_body("Is it?"), headers=AUTH).status_code == 200
            )
        stats = http.get("/v1/cache/stats", headers=AUTH).json()
        assert stats["store"]["degraded"] is True
