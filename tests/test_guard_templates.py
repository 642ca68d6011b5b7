"""canonical_question: request templates reduced to one form for the embedded text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cacheback import SemanticCache
from cacheback.guard import canonical_question
from cacheback.guard._templates import MAX_TEMPLATE_CHARS, _canonical_short


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
        ("tell   me   about    lifetimes in Rust ?", "What is lifetimes in Rust?"),
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
        "What are lifetimes in Rust??",  # already the canonical question form
        "what's a lifetime",
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


def test_long_texts_are_left_alone() -> None:
    long = "Tell me about " + "the history of the lighthouse keepers of the north coast " * 10
    assert len(long) > MAX_TEMPLATE_CHARS
    before = _canonical_short.cache_info()
    assert canonical_question(long) == long
    # A long prompt is neither hashed into nor kept by the per-text cache.
    assert _canonical_short.cache_info() == before


def test_the_product_page_example_hits(cache_dir: Path, embedder: Any) -> None:
    """End to end through the public cache: the template is matched, not the exact text."""
    with SemanticCache(cache_dir=cache_dir, embedder=embedder,
                       similarity_threshold=0.90) as cache:
        cache.populate("What is Python?", "A programming language.")
        assert cache.lookup("Tell me about Python") == "A programming language."
        assert cache.lookup("Can you explain Python, please?") == "A programming language."
        assert cache.lookup("Tell me about Ruby") is None
        # The exact tier still keys on the original text: only the very same text is exact.
        detail = cache.lookup_detailed("Tell me about Python")
        assert (detail.tier, detail.hit) == ("verbatim", True)
        assert cache.lookup_detailed("What is Python?").tier == "exact"
