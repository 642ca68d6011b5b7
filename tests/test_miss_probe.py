"""The miss probe: the pure skip decision, the per-scope probe rows, and the shipped table
over the real MiniLM tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.adapters.embedders._miss_probe import MissProbe, ScopeProbes, can_skip, clear_miss


def test_can_skip_only_when_every_probe_similarity_is_below_the_cut() -> None:
    assert can_skip(np.array([0.1, 0.5, 0.69], np.float32), 0.92, 0.2)  # cut 0.72
    assert not can_skip(np.array([0.1, 0.73], np.float32), 0.92, 0.2)
    assert not can_skip([0.72], 0.92, 0.2)  # at the cut: not provably a miss
    assert can_skip([], 0.92, 0.2)  # an empty scope has nothing to hit
    assert not can_skip([0.5], 0.92, 0.5)  # a wider margin keeps more on the inference path


def test_scope_probes_search_only_their_scope_and_forget_removed_entries() -> None:
    scopes = ScopeProbes(2)
    scopes.add("a", [1, 2], np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    scopes.add("b", [3], np.array([[0.6, 0.8]], np.float32))
    scopes.add("a", [4], np.array([[0.8, 0.6]], np.float32))
    assert len(scopes) == 4
    np.testing.assert_allclose(scopes.similarities("a", np.array([1.0, 0.0], np.float32)), [1.0, 0.0, 0.8])
    np.testing.assert_allclose(scopes.similarities("b", np.array([1.0, 0.0], np.float32)), [0.6])
    assert scopes.similarities("nowhere", np.array([1.0, 0.0], np.float32)).size == 0
    assert scopes.remove([1, 3, 99]) == 2
    np.testing.assert_allclose(scopes.similarities("a", np.array([1.0, 0.0], np.float32)), [0.0, 0.8])
    assert scopes.similarities("b", np.array([1.0, 0.0], np.float32)).size == 0
    with pytest.raises(ValueError):
        scopes.add("a", [5], np.zeros((2, 2), np.float32))


@pytest.fixture(scope="module")
def probe() -> MissProbe:
    return MiniLMEmbedder(keep_warm_ms=0).miss_probe()


def test_shipped_table_ranks_a_rewording_above_unrelated_questions(probe: MissProbe) -> None:
    vecs = probe.vectors(
        [
            "How do I undo the last commit in git?",
            "how to undo my last git commit",
            "What is the capital city of Mongolia?",
            "Best recipe for a sourdough starter",
        ]
    )
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    sims = vecs[1:] @ vecs[0]
    assert sims[0] > sims[1] + 0.2 and sims[0] > sims[2] + 0.2
    assert 0.0 < probe.margin < 0.92  # the build's calibrated margin travels with the table


def test_clear_miss_sends_an_unrelated_question_upstream_but_not_a_rewording(probe: MissProbe) -> None:
    cached = ["How do I undo the last commit in git?", "What is the capital city of Mongolia?"]
    scopes = ScopeProbes(probe.dim)
    scopes.add("s", [1, 2], probe.vectors(cached))
    assert clear_miss(probe, scopes, "s", "Best recipe for a sourdough starter with rye flour", 0.92)
    assert not clear_miss(probe, scopes, "s", "how to undo my last git commit", 0.92)
    assert clear_miss(probe, scopes, "empty scope", "how to undo my last git commit", 0.92)

