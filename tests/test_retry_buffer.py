"""The retry buffer: answers kept through a store outage, bounded, oldest dropped first."""

from __future__ import annotations

import pytest

from cacheback.core._retry_buffer import MAX_ATTEMPTS, RetryBuffer
from cacheback.core._types import NewEntry, text_hash


def answer(question: str, *, expires_at: float = 2000.0, text: str = "an answer") -> NewEntry:
    return NewEntry(
        scope="s",
        query=question,
        query_hash=text_hash(question),
        answer=text,
        vector=None,
        created_at=1000.0,
        expires_at=expires_at,
    )


def queries(buffer: RetryBuffer) -> list[str]:
    return [item.entry.query for item in buffer.take(1500.0, 100)]


def test_past_its_capacity_the_oldest_answers_are_dropped_and_counted() -> None:
    buffer = RetryBuffer(3)
    for q in ["q1", "q2", "q3", "q4", "q5"]:
        buffer.add(answer(q))
    assert len(buffer) == 3 and buffer.dropped == 2
    assert queries(buffer) == ["q3", "q4", "q5"]
    assert buffer.describe()["retried"] == 3 and len(buffer) == 0


def test_the_same_question_answered_again_keeps_only_the_newer_answer() -> None:
    buffer = RetryBuffer(10)
    buffer.add(answer("q1", text="old"))
    buffer.add(answer("q2"))
    buffer.add(answer("q1", text="new"))
    items = buffer.take(1500.0, 10)
    assert [(i.entry.query, i.entry.answer) for i in items] == [("q2", "an answer"), ("q1", "new")]


def test_expired_answers_are_not_written() -> None:
    buffer = RetryBuffer(10)
    buffer.add(answer("short", expires_at=1200.0))
    buffer.add(answer("long"))
    assert queries(buffer) == ["long"] and buffer.expired == 1


def test_answers_put_back_come_first_unless_answered_again_meanwhile() -> None:
    buffer = RetryBuffer(10)
    for q in ["q1", "q2", "q3"]:
        buffer.add(answer(q))
    taken = buffer.take(1500.0, 10)
    buffer.add(answer("q4"))
    buffer.add(answer("q2", text="newer"))
    buffer.put_back(taken[1:])
    items = buffer.take(1500.0, 10)
    assert [(i.entry.query, i.entry.answer) for i in items] == [
        ("q3", "an answer"),
        ("q4", "an answer"),
        ("q2", "newer"),
    ]


def test_an_answer_the_store_keeps_refusing_is_given_up() -> None:
    buffer = RetryBuffer(10)
    buffer.add(answer("poison"), attempts=MAX_ATTEMPTS - 1)
    assert len(buffer) == 1
    buffer.add(answer("poison"), attempts=MAX_ATTEMPTS)
    assert buffer.dropped == 1


def test_a_zero_capacity_keeps_nothing_and_a_negative_one_is_refused() -> None:
    buffer = RetryBuffer(0)
    buffer.add(answer("q1"))
    assert len(buffer) == 0 and buffer.dropped == 1
    with pytest.raises(ValueError):
        RetryBuffer(-1)
