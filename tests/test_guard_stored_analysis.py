"""A stored question is analysed once, when its answer is written, not by the first lookup
that judges it; a question judged as a new one before its answer was stored is not
analysed again. The decisions are those of the cold rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import cacheback.guard._extract as extract
from cacheback import AsyncSemanticCache
from cacheback.core._routing import cosine_rule, stored_texts_hook
from cacheback.guard import MAX_ANALYSED_CHARS, clear_caches, verbatim_decision, verbatim_rule
from cacheback.guard._extract import _entry_features, _features
from cacheback.stages.persister import PREPARE_INLINE_CHARS

STORED = "How do I reverse a list in Python?"
ASKED = "How can I reverse a list in Python, please?"


class Counting:
    """The real ``_analyse``, counting the texts it analyses."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._real = extract._analyse

    def __call__(self, text: str) -> Any:
        self.texts.append(text)
        return self._real(text)


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> Counting:
    clear_caches()
    counting = Counting()
    monkeypatch.setattr(extract, "_analyse", counting)
    return counting


def is_kept(text: str) -> bool:
    """Whether the cached questions' side holds ``text``'s analysis (asked without analysing)."""
    before = _entry_features.cache_info().hits
    _entry_features(text)
    return _entry_features.cache_info().hits == before + 1


def test_a_question_judged_before_its_answer_was_stored_is_not_analysed_again(analysed: Counting) -> None:
    verbatim_rule()(ASKED, STORED, 0.95, 0.92)  # ASKED analysed as a new question
    assert analysed.texts.count(ASKED) == 1
    assert _entry_features(ASKED) is _features(ASKED)
    assert analysed.texts.count(ASKED) == 1


def test_prepare_analyses_stored_questions_and_a_lookup_only_its_own(analysed: Counting) -> None:
    too_long = "word " * (MAX_ANALYSED_CHARS // 5 + 1)
    rule = verbatim_rule()
    hook = stored_texts_hook(rule)
    assert hook is not None
    for similarity in (0.85, 0.92, 0.97):
        clear_caches()
        analysed.texts.clear()
        hook([STORED, too_long])
        assert analysed.texts == [STORED]  # a text the guard never analyses is left alone
        assert is_kept(STORED)
        got = rule(ASKED, STORED, similarity, 0.92)
        assert analysed.texts == [STORED, ASKED]
        clear_caches()  # the cold decision: every text analysed afresh
        cold = verbatim_decision(ASKED, STORED, similarity, 0.92)
        assert got == (cold.hit, cold.reasons)


def test_the_cosine_rule_has_nothing_to_prepare() -> None:
    assert stored_texts_hook(cosine_rule) is None
    assert stored_texts_hook(verbatim_rule(guard=False)) is None


@pytest.mark.anyio
async def test_the_engine_analyses_a_stored_question_when_it_writes_it(
    cache_dir: Path, embedder: Any, analysed: Counting
) -> None:
    long_question = "Why does my build fail with this log? " + "error: linker step failed; " * 50
    assert PREPARE_INLINE_CHARS < len(long_question) <= MAX_ANALYSED_CHARS  # a worker thread's
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate(STORED, "Use reversed() or list.reverse().")
        await cache.populate(long_question, "Read the first error.")
        await cache.flush()  # the write after the populate's has run
        assert is_kept(STORED) and is_kept(long_question)
        analysed.texts.clear()
        result = await cache.lookup_detailed(ASKED)
        assert analysed.texts == [ASKED]  # the stored question's analysis was at hand
    assert result.hit
    judged = next(c for c in result.candidates if c["query"] == STORED)
    clear_caches()
    cold = verbatim_decision(ASKED, STORED, judged["similarity"], 0.92)
    assert (cold.hit, cold.reasons) == (True, tuple(judged["guard_reasons"]))


@pytest.mark.anyio
async def test_without_the_guard_nothing_is_analysed_on_write(
    cache_dir: Path, embedder: Any, analysed: Counting
) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder, guard_enabled=False) as cache:
        await cache.populate(STORED, "Use reversed().")
        await cache.flush()
        assert await cache.lookup(STORED) == "Use reversed()."
    assert analysed.texts == []


@pytest.mark.anyio
async def test_a_failing_analysis_of_stored_questions_never_fails_their_write(
    cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_caches()

    def broken(text: str) -> Any:
        raise ValueError("analysis failed")

    monkeypatch.setattr(extract, "_analyse", broken)
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate(STORED, "Use reversed().")
        await cache.flush()
        monkeypatch.undo()  # the lookups judge with the real analysis again
        assert await cache.lookup(STORED) == "Use reversed()."
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        assert await cache.lookup(STORED) == "Use reversed()."  # on disk
