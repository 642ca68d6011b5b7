"""The drop-in clients with ``store_url``: two clients (two replicas) share one cache."""

from __future__ import annotations

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
