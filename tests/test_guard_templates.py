"""canonical_question: request templates reduced to one form for the embedded text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cacheback.guard import canonical_question


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("What is Rust?", "What is Rust?"),
        ("Tell me about Rust", "What is Rust?"),
        ("tell me more about the Rust borrow checker.", "What is the Rust borrow checker?"),
        ("Can you explain Rust?", "What is Rust?"),
        ("Could you please describe Rust", "What is Rust?"),
        ("I want to know about Rust!", "What is Rust?"),
        ("I\u2019d like to know about Rust, please", "What is Rust?"),
        ("Please, give me an overview of Rust", "What is Rust?"),
        ("what's Rust", "What is Rust?"),
        ("what   are    lifetimes in Rust ?", "What is lifetimes in Rust?"),
        ("Explain how lifetimes work", "How lifetimes work?"),
        ("I want to know why the tide turns", "Why the tide turns?"),
        ("Do you know where the ferry leaves from?", "Where the ferry leaves from?"),
    ],
)
def test_templates_become_one_form(text: str, canonical: str) -> None:
    assert canonical_question(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "How do lifetimes work in Rust?",  # no template
        "Can you swim?",  # a courtesy with no template after it asks something else
        "Please list the moons of Mars",
        "Tell me a story about a lighthouse",  # "tell me" needs a clause after it
        "I want to know",  # nothing after the template
        "Describe",
        "Whatever became of the old mill?",  # "what" inside a longer word
        "",
    ],
)
def test_other_texts_are_unchanged(text: str) -> None:
    assert canonical_question(text) == text


def test_templates_meet_but_different_topics_stay_apart() -> None:
    assert canonical_question("Tell me about Rust") == canonical_question("What is Rust?")
    assert canonical_question("Tell me about Rust") != canonical_question("Tell me about Go")
    assert canonical_question("Explain how tides work") != canonical_question("What are tides?")


def test_the_product_page_example_with_the_real_embedder(embedder: Any) -> None:
    """The product page's example: "What is Python?" cached, "Tell me about Python" looked
    up at threshold 0.90. The raw texts embed below it; their canonical forms do not."""
    stored, asked = "What is Python?", "Tell me about Python"
    raw = np.asarray(embedder.embed([stored, asked]), dtype=np.float32)
    canon = np.asarray(embedder.embed([canonical_question(stored), canonical_question(asked)]),
                       dtype=np.float32)
    assert float(raw[0] @ raw[1]) < 0.90
    assert float(canon[0] @ canon[1]) >= 0.90
