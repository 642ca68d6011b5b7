"""The guard's shortcuts give the same answers as the full work they skip.

- a cached question keeps its analysis while a stream of new questions goes by;
- a rewrite whose text is absent is skipped (ASCII only), with the same result as running
  every rewrite;
- the engine's rule computes no scorer features for a pair that cannot hit, and says what
  ``verbatim_decision`` says.
"""

from __future__ import annotations

import pytest

from cacheback.guard import clear_caches, guard_reasons, verbatim_decision, verbatim_rule
from cacheback.guard._extract import _entry_features, _features
from cacheback.guard._text import _REWRITES, _normalise, _strip_accents

CACHED = "How do I rename a branch in git?"


def _every_rewrite(text: str) -> str:
    """``_normalise`` without the shortcut: every pattern, in order."""
    import unicodedata

    from cacheback.guard._text import _PUNCT

    text = _strip_accents(unicodedata.normalize("NFKC", text)).translate(_PUNCT)
    for pattern, repl, _ in _REWRITES:
        text = pattern.sub(repl, text)
    return text


def test_a_cached_question_keeps_its_analysis_while_new_questions_go_by() -> None:
    clear_caches()
    guard_reasons("How can I rename a git branch?", CACHED)
    size = _features.cache_info().maxsize
    assert size is not None
    for i in range(size + 100):  # more new questions than the query side keeps
        guard_reasons(f"How can I rename branch number {i} in git?", CACHED)
    before = _entry_features.cache_info()
    guard_reasons("What is the way to rename a git branch?", CACHED)
    after = _entry_features.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


@pytest.mark.parametrize(
    "text",
    [
        "Should smoking be banned, or not?",
        "Why or why not would you pick Rust?",
        "What is no. 5 on the list?",
        "Not only fast but cheap: which database?",
        "I no longer use vim, what now?",
        "No, I meant the other one: which port?",
        "Don't forget to close the file: how?",
        "Do not forget the semicolon in JS?",
        "Flights from the United States of America to the United Kingdom",
        "Best pizza in New York City?",
        "I can't install numpy, it won't build and I shan't give up",
        "Why doesn't it work? It isn't obvious, dont you think, cant we fix it",
        "Let's see: it's late, there's time, what's next and he's here",
        "They're sure we've done it, you'll see, I'm sure I'd know",
        "The compiler's output and the users' settings",
        "DON'T FORGET THE UNITED STATES",
        "plain words without any trigger at all",
        "Café naïve résumé: can't stop",
        "İs the ünited states ſtate big, or not?",
        "",
    ],
)
def test_skipping_absent_rewrites_changes_nothing(text: str) -> None:
    assert _normalise(text) == _every_rewrite(text)


PAIRS = [
    ("How do I sort a list in Python?", "How do I sort a list in Java?"),  # language veto
    ("Convert 5 USD to EUR", "Convert 5 EUR to USD"),  # direction
    ("Weather in Paris today", "Weather in Paris tomorrow"),  # date
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),  # no veto
    ("What is the capital of France?", "What is the capital of France?"),  # identical
    ("Tell me about the Eiffel Tower in Paris", "Tell me about the Eiffel Tower"),
]


@pytest.mark.parametrize(("query", "candidate"), PAIRS)
@pytest.mark.parametrize("similarity", [0.5, 0.9199, 0.92, 0.93, 0.96, 0.999])
def test_the_rule_agrees_with_the_full_decision(query: str, candidate: str, similarity: float) -> None:
    rule = verbatim_rule()
    d = verbatim_decision(query, candidate, similarity, 0.92)
    assert rule(query, candidate, similarity, 0.92) == (d.hit, d.reasons)


def test_a_vetoed_pair_gets_no_scorer_features() -> None:
    clear_caches()
    rule = verbatim_rule()
    query, candidate = "How do I sort a list in Python?", "How do I sort a list in Java?"
    hit, reasons = rule(query, candidate, 0.97, 0.92)
    assert not hit and any(r.startswith("language") for r in reasons)
    # The veto needed both analyses once; the scorer would have asked for them again.
    assert _features.cache_info().hits == 0 and _entry_features.cache_info().hits == 0
