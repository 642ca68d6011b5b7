"""LRU touches are gathered and written in batches, never one store write per hit, and
none is lost: they are written with new answers, at a flush, once a second and at close."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cacheback import AsyncSemanticCache
from cacheback.stages.persister import TOUCH_INTERVAL_S, touches_due

pytestmark = pytest.mark.anyio


def test_touches_are_due_with_answers_at_a_barrier_at_close_or_after_the_interval() -> None:
    quiet = {"fills": False, "barrier": False, "closing": False}
    assert not touches_due(**quiet, since_s=0.0)
    assert not touches_due(**quiet, since_s=TOUCH_INTERVAL_S / 2)
    assert touches_due(**quiet, since_s=TOUCH_INTERVAL_S)
    assert touches_due(**{**quiet, "fills": True}, since_s=0.0)
    assert touches_due(**{**quiet, "barrier": True}, since_s=0.0)
    assert touches_due(**{**quiet, "closing": True}, since_s=0.0)


def stored_hits(cache_dir: Path) -> dict[str, int]:
    with sqlite3.connect(cache_dir / "cache.db") as db:
        return {q: h for q, h in db.execute("SELECT query, hits FROM entries")}


async def test_hits_are_counted_in_the_store_by_close(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate("What is the boiling point of water at sea level?", "100 degrees Celsius.")
        await cache.populate("Who wrote the novel Moby-Dick?", "Herman Melville.")
        for _ in range(5):
            assert await cache.lookup("What is the boiling point of water at sea level?")
        assert await cache.lookup("Who wrote the novel Moby-Dick?")
    # Closed within the touch interval of the last hit: the last write carried them.
    assert stored_hits(cache_dir) == {
        "What is the boiling point of water at sea level?": 5,
        "Who wrote the novel Moby-Dick?": 1,
    }


async def test_a_flush_writes_the_gathered_touches(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate("How many legs does a spider have?", "Eight.")
        await cache.flush()
        for _ in range(3):
            assert await cache.lookup("How many legs does a spider have?")
        await cache.flush()
        assert stored_hits(cache_dir) == {"How many legs does a spider have?": 3}
