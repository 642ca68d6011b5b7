"""``cacheback eval`` says what the guard cost and saved, per rule: the plain-cosine hits
the shipped decision removed, correct and wrong, on hand-placed vectors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cacheback.adapters.eval import format_report, run_pairwise, run_retrieval

DIM = 16


def _pair(axis: int, cosine: float) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    a = np.zeros(DIM, dtype=np.float32)
    b = np.zeros(DIM, dtype=np.float32)
    a[axis] = 1.0
    b[axis], b[axis + 1] = cosine, float(np.sqrt(1 - cosine**2))
    return a, b


class Table:
    def __init__(self, table: dict[str, NDArray[np.float32]]) -> None:
        self.table = table

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.stack([self.table[t] for t in texts])


# (question1, question2, label, cosine)
PAIRS = [
    ("Convert 100 USD to EUR", "Convert 100 EUR to USD", 0, 0.98),  # direction: wrong removed
    ("Flights from Oslo to Rome", "Flights from Rome to Oslo", 0, 0.97),  # direction: wrong removed
    ("Is the museum open on Monday?", "Is the museum open on Sunday?", 1, 0.96),  # date: correct removed
    ("How do I boil an egg?", "How can I boil an egg?", 1, 0.97),  # kept
    ("What is a black hole?", "What exactly is a black hole?", 1, 0.90),  # below the threshold
]


def test_pairwise_removed_hits_per_rule(tmp_path: Path) -> None:
    table: dict[str, NDArray[np.float32]] = {}
    lines = ["question1,question2,is_duplicate"]
    for k, (q1, q2, label, cos) in enumerate(PAIRS):
        table[q1], table[q2] = _pair(2 * k, cos)
        lines.append(f'"{q1}","{q2}",{label}')
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_pairwise(path, Table(table), 0.92)
    assert report.removed == (("direction", 0, 2), ("date", 1, 0))
    text = format_report(report)
    assert "correct removed" in text and "wrong removed" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("direction"))
    assert row.split() == ["direction", "0", "2"]


def test_retrieval_removed_hits_per_rule(tmp_path: Path) -> None:
    o1, s1 = _pair(0, 0.97)  # the nearest entry is the other direction: a wrong hit removed
    o2, s2 = _pair(4, 0.96)
    table = {
        "Convert 100 USD to EUR": o1, "Convert 100 EUR to USD": s1,
        "How do I boil an egg?": o2, "How can I boil an egg?": s2,
    }
    data = [{"origin": "Convert 100 USD to EUR", "similar": "Convert 100 EUR to USD"},
            {"origin": "How do I boil an egg?", "similar": "How can I boil an egg?"}]
    path = tmp_path / "retrieval.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    report = run_retrieval(path, Table(table), 0.92)
    # The first lookup's own entry is the nearest, but its text is the opposite direction:
    # plain cosine counts it correct, the guard removes it (a correct hit removed).
    assert report.removed == (("direction", 1, 0),)
    assert report.plain.correct == 2 and report.shipped.correct == 1
