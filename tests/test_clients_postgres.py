"""The drop-in clients with ``store_url``: two clients (two replicas) share one cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _client_helpers import anthropic_args, openai_args, user
from fake_provider import FakeProvider

from cacheback import CachedAnthropic, CachedOpenAI


def test_openai_clients_on_one_database_share_answers(
    fake: FakeProvider, tmp_path: Path, embedder: Any, pg_url: str
) -> None:
    one = CachedOpenAI(**openai_args(fake, tmp_path / "one", embedder, store_url=pg_url))
    two = CachedOpenAI(**openai_args(fake, tmp_path / "two", embedder, store_url=pg_url))
    try:
        first = one.chat.completions.create(model="gpt-4o", messages=user("Name a prime above ten"))
        assert first.cacheback.tier == "upstream"  # type: ignore[attr-defined]
        one.cache.flush()  # written behind: make it visible to the other replica now
        again = two.chat.completions.create(model="gpt-4o", messages=user("Name a prime above ten"))
        assert again.cacheback.tier == "exact"  # type: ignore[attr-defined]
        assert again.choices[0].message.content == first.choices[0].message.content
        assert fake.count("chat") == 1
    finally:
        one.close()
        two.close()


def test_anthropic_client_takes_store_url(
    fake: FakeProvider, tmp_path: Path, embedder: Any, pg_url: str
) -> None:
    client = CachedAnthropic(**anthropic_args(fake, tmp_path, embedder, store_url=pg_url))
    try:
        client.messages.create(model="claude-sonnet-4-20250514", max_tokens=50, messages=user("Say hi"))
        hit = client.messages.create(model="claude-sonnet-4-20250514", max_tokens=50, messages=user("Say hi"))
        assert hit.cacheback.tier == "exact"  # type: ignore[attr-defined]
        stats = client.cache.stats
        assert stats["store"]["backend"] == "postgres"
    finally:
        client.close()


def _wait_for(check: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_answers_given_while_postgres_is_down_are_hits_after_it_is_back(
    fake: FakeProvider, tmp_path: Path, embedder: Any, pg_server: Any
) -> None:
    url = pg_server.fresh_url()
    questions = [f"Which river flows through town number {i}?" for i in range(5)]
    client = CachedOpenAI(**openai_args(fake, tmp_path / "one", embedder, store_url=url))
    try:
        client.chat.completions.create(model="gpt-4o", messages=user("Warm the cache up"))
        client.cache.flush()
        pg_server.stop("fast")
        try:
            for q in questions:  # answered by the provider; nothing can be written now
                out = client.chat.completions.create(model="gpt-4o", messages=user(q))
                assert out.cacheback.tier == "upstream"  # type: ignore[attr-defined]
            stats = client.cache.stats
            assert stats["store"]["degraded"] and stats["unwritten"]["waiting"] == len(questions)
        finally:
            pg_server.start()
        calls = fake.count("chat")

        def written() -> bool:
            stats = client.cache.stats
            return not stats["store"]["degraded"] and stats["unwritten"]["waiting"] == 0

        _wait_for(written, 30.0)
        client.cache.flush()
        assert client.cache.stats["unwritten"]["retried"] == len(questions)
    finally:
        client.close()
    # Another replica, started after the outage, finds them in the database.
    other = CachedOpenAI(**openai_args(fake, tmp_path / "two", embedder, store_url=url))
    try:
        for q in questions:
            again = other.chat.completions.create(model="gpt-4o", messages=user(q))
            assert again.cacheback.tier == "exact"  # type: ignore[attr-defined]
        assert fake.count("chat") == calls
    finally:
        other.close()
