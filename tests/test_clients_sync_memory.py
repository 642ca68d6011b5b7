"""A sync client answers a repeat its engine's memory holds on the caller's own thread, with
no hop to the engine's loop, and never serves from memory what was blocked, deleted or
cleared meanwhile. The real OpenAI SDK over real HTTP to the fake provider."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from _client_helpers import openai_args, user
from fake_provider import FakeProvider

from cacheback import CachebackBlocked, CachedOpenAI
from cacheback._portal import PortalRunner


@pytest.fixture
def portal_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the coroutine functions sent to the engine's loop through the portal."""
    calls: list[str] = []
    original = PortalRunner.call

    def recording(self: PortalRunner, fn: Any, *args: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return original(self, fn, *args)

    monkeypatch.setattr(PortalRunner, "call", recording)
    return calls


def ask(c: CachedOpenAI, text: str) -> Any:
    return c.chat.completions.create(model="gpt-4o", messages=user(text))


def test_a_repeat_from_memory_takes_no_hop_to_the_loop(
    fake: FakeProvider, cache_dir: Path, embedder: Any, portal_calls: list[str]
) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        first = ask(c, "How far is the Moon from the Earth?")
        c.cache.flush()
        portal_calls.clear()
        hits = [ask(c, "How far is the Moon from the Earth?") for _ in range(3)]
        assert all(h.cacheback_hit and h.cacheback.tier == "exact" for h in hits)
        assert hits[0].choices[0].message.content == first.choices[0].message.content
        assert portal_calls == []  # answered on this thread
        miss = ask(c, "How far is Mars from the Sun?")
        assert miss.cacheback_hit is False and portal_calls == ["run"]
        stats = c.cache.stats  # the hits' bookkeeping reached the loop before this call
        assert stats["hits"] == 3
    assert fake.count("chat") == 2


def test_memory_never_serves_a_blocked_deleted_or_cleared_answer(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        ask(c, "Which metal is liquid at room temperature?")
        c.cache.flush()
        hit = ask(c, "Which metal is liquid at room temperature?")
        assert hit.cacheback_hit is True
        assert c.cache.delete(hit.cacheback.entry_id)
        assert ask(c, "Which metal is liquid at room temperature?").cacheback_hit is False
        c.cache.flush()
        assert ask(c, "Which metal is liquid at room temperature?").cacheback_hit is True
        assert c.cache.clear() >= 1
        assert ask(c, "Which metal is liquid at room temperature?").cacheback_hit is False
        c.cache.flush()
        assert ask(c, "Which metal is liquid at room temperature?").cacheback_hit is True
        c.cache.negative.add("Which metal is liquid at room temperature?", reason="test")
        with pytest.raises(CachebackBlocked):
            ask(c, "Which metal is liquid at room temperature?")
    assert fake.count("chat") == 3


def test_many_threads_hit_memory_at_once(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    questions = [f"What is the {n}th prime number?" for n in (5, 7, 11, 13)]
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        expected = {q: ask(c, q).choices[0].message.content for q in questions}
        c.cache.flush()
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                for j in range(25):
                    q = questions[(i + j) % len(questions)]
                    r = ask(c, q)
                    assert r.cacheback_hit is True and r.choices[0].message.content == expected[q]
            except BaseException as exc:  # reported below, on the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors and not any(t.is_alive() for t in threads)
        assert c.cache.stats["hits"] == 8 * 25
    assert fake.count("chat") == len(questions)
