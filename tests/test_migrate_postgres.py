"""``cacheback migrate``: an embedded cache directory copied into PostgreSQL, no re-embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from cacheback import AsyncSemanticCache
from cacheback.adapters.cli import main
from cacheback.adapters.storage.postgres._migrate import migrate_directory

pytestmark = pytest.mark.anyio

QUESTIONS = [
    ("How do I reverse a list in Python?", "Use reversed() or slicing."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ("Who painted the ceiling of the Sistine Chapel?", "Michelangelo."),
    ("How many continents are there?", "Seven."),
    ("What does HTTP stand for?", "Hypertext Transfer Protocol."),
]


async def _populated(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        for q, a in QUESTIONS:
            await cache.populate(q, a)
        await cache.populate("Scoped question about tea", "Green.", namespace="tenant-x")
        await cache.negative.add("How do I make a weapon at home?", reason="policy", category="harm")
        assert await cache.lookup(QUESTIONS[0][0]) is not None  # a hit, for the counters


async def test_every_entry_is_still_a_hit_after_migrating(
    cache_dir: Path, pg_url: str, embedder: Any
) -> None:
    await _populated(cache_dir, embedder)
    code = await anyio.to_thread.run_sync(main, ["migrate", "--from", str(cache_dir), "--to", pg_url])
    assert code == 0
    async with AsyncSemanticCache(store_url=pg_url, embedder=embedder) as cache:
        for q, a in QUESTIONS:
            hit = await cache.lookup_detailed(q)
            assert hit.tier == "exact" and hit.answer == a
        assert await cache.lookup("Scoped question about tea", namespace="tenant-x") == "Green."
        # The copied vectors serve paraphrases (migrate has no embedder: nothing re-embedded).
        para = await cache.lookup_detailed("How can I reverse a list in Python?")
        assert para.tier == "verbatim" and para.answer == QUESTIONS[0][1]
        blocked = await cache.negative.check("How do I make a weapon at home?")
        assert blocked is not None
        stats = await cache.stats()
        assert stats["entries"] == len(QUESTIONS) + 1
        assert stats["hits"] >= 1  # the source's counters came along


async def test_an_interrupted_migration_resumes_without_duplicates(
    cache_dir: Path, pg_url: str, embedder: Any
) -> None:
    await _populated(cache_dir, embedder)
    seen: list[tuple[int, int]] = []

    def stop_after_first_batch(done: int, total: int) -> None:
        seen.append((done, total))
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await migrate_directory(cache_dir, pg_url, batch=2, progress=stop_after_first_batch)
    again = await migrate_directory(cache_dir, pg_url, batch=2)
    assert again.resumed and again.entries_copied == len(QUESTIONS) + 1 - 2
    assert again.negatives_copied == 1 and again.counters_copied
    third = await migrate_directory(cache_dir, pg_url, batch=2)
    assert third.entries_copied == 0 and third.negatives_copied == 0 and not third.counters_copied
    async with AsyncSemanticCache(store_url=pg_url, embedder=embedder) as cache:
        stats = await cache.stats()
        assert stats["entries"] == len(QUESTIONS) + 1 and stats["negative_entries"] == 1


async def test_export_and_import_work_against_postgres(
    cache_dir: Path, pg_url: str, embedder: Any, tmp_path: Path
) -> None:
    await _populated(cache_dir, embedder)
    out = tmp_path / "entries.jsonl"
    assert await anyio.to_thread.run_sync(main, ["--cache-dir", str(cache_dir), "export", str(out)]) == 0
    assert await anyio.to_thread.run_sync(main, ["--store-url", pg_url, "import", str(out)]) == 0
    back = tmp_path / "back.jsonl"
    assert await anyio.to_thread.run_sync(main, ["--store-url", pg_url, "export", str(back)]) == 0
    lines = (await anyio.Path(back).read_text()).splitlines()
    assert len(lines) == len(QUESTIONS) + 1
