"""The tier decision and batching policy are pure: no event loop needed."""

from __future__ import annotations

from cacheback.core._batching import BatchPolicy, batch_wait
from cacheback.core._routing import TIE_MARGIN, TIE_WORD_WEIGHT, cosine_rule, route
from cacheback.core._types import CacheEntry, Candidate, Tier


def cand(sim: float, query: str = "q", entry_id: int = 1) -> Candidate:
    return Candidate(CacheEntry(entry_id, "s", query, "answer", None, 0.0, 1e12, 0.0), sim)


def decide(cands: list[Candidate], mode: str = "off", rule=cosine_rule):  # type: ignore[no-untyped-def]
    return route(
        "q",
        cands,
        similarity_threshold=0.92,
        synthesis_threshold=0.80,
        synthesis_mode=mode,
        verbatim_rule=rule,
    )


def test_verbatim_when_above_threshold() -> None:
    d = decide([cand(0.95), cand(0.85, entry_id=2)])
    assert d.tier is Tier.VERBATIM and d.best is not None and d.best.entry_id == 1


def test_miss_below_threshold_with_synthesis_off() -> None:
    assert decide([cand(0.90)]).tier is Tier.MISS


def test_auto_synthesis_between_thresholds() -> None:
    d = decide([cand(0.90), cand(0.82, entry_id=2), cand(0.70, entry_id=3)], mode="auto")
    assert d.tier is Tier.SYNTHESIS
    assert [c.entry_id for c in d.candidates] == [1, 2]


def test_auto_prefers_verbatim_and_always_prefers_synthesis() -> None:
    cands = [cand(0.97), cand(0.85, entry_id=2)]
    assert decide(cands, mode="auto").tier is Tier.VERBATIM
    assert decide(cands, mode="always").tier is Tier.SYNTHESIS


def test_nothing_near_is_a_miss_in_every_mode() -> None:
    for mode in ("off", "auto", "always"):
        assert decide([cand(0.5)], mode=mode).tier is Tier.MISS
        assert decide([], mode=mode).tier is Tier.MISS


def test_vetoed_best_falls_to_next_candidate_and_keeps_reasons() -> None:
    def rule(q: str, c: str, s: float, t: float) -> tuple[bool, tuple[str, ...]]:
        return (False, ("number:1!=2",)) if c == "bad" else (s >= t, ())

    d = decide([cand(0.99, "bad", 1), cand(0.95, "good", 2)], rule=rule)
    assert d.tier is Tier.VERBATIM and d.best is not None and d.best.entry_id == 2
    only_bad = decide([cand(0.99, "bad", 1)], rule=rule)
    assert only_bad.tier is Tier.MISS and only_bad.guard_reasons


def _guarded(q: str, c: str, s: float, t: float) -> tuple[bool, tuple[str, ...]]:
    """A rule other than cosine_rule that accepts on the cosine alone."""
    return s >= t, ()


def route_q(query: str, cands: list[Candidate], rule=_guarded):  # type: ignore[no-untyped-def]
    return route(
        query,
        cands,
        similarity_threshold=0.92,
        synthesis_threshold=0.80,
        synthesis_mode="off",
        verbatim_rule=rule,
    )


def test_near_tie_goes_to_the_candidate_worded_like_the_query() -> None:
    q = "How do I reset my router password?"
    other = cand(0.955, "What is the default password of a router?", 1)
    same = cand(0.950, "how do I reset my router password", 2)
    d = route_q(q, [other, same])
    assert d.tier is Tier.VERBATIM and d.best is not None and d.best.entry_id == 2
    # Plain cosine (the guard off) keeps the nearest one.
    d = route_q(q, [other, same], rule=cosine_rule)
    assert d.best is not None and d.best.entry_id == 1
    # Beyond TIE_MARGIN the nearer candidate wins whatever its wording.
    far = cand(0.955 - TIE_MARGIN - 0.005, "how do I reset my router password", 3)
    d = route_q(q, [other, far])
    assert d.best is not None and d.best.entry_id == 1
    # Equal wording: the nearer one.
    twin = cand(0.950, "What is the default password of a router?", 4)
    d = route_q(q, [other, twin])
    assert d.best is not None and d.best.entry_id == 1


def test_tie_break_only_among_accepted_candidates() -> None:
    q = "How do I reset my router password?"

    def rule(qq: str, c: str, s: float, t: float) -> tuple[bool, tuple[str, ...]]:
        return (False, ("number:1!=2",)) if c.startswith("how") else (s >= t, ())

    d = route_q(
        q,
        [
            cand(0.955, "What is the default password of a router?", 1),
            cand(0.950, "how do I reset my router password", 2),
        ],
        rule=rule,
    )
    assert d.best is not None and d.best.entry_id == 1


def test_tie_break_weighs_overlap_against_similarity() -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    q = " ".join(words)
    c1 = " ".join([*words[:8], "xi", "omicron"])  # word overlap 8/12
    c2 = " ".join([*words[:9], "xi"])  # word overlap 9/11: 0.15 better
    gain = TIE_WORD_WEIGHT * (9 / 11 - 8 / 12)
    assert gain < TIE_MARGIN
    lead = route_q(q, [cand(0.960, c1, 1), cand(0.960 - gain - 0.002, c2, 2)])
    assert lead.best is not None and lead.best.entry_id == 1  # the cosine lead is larger
    close = route_q(q, [cand(0.960, c1, 1), cand(0.960 - gain + 0.002, c2, 2)])
    assert close.best is not None and close.best.entry_id == 2  # the wording gain is larger


def test_batch_wait_never_waits_without_backlog() -> None:
    p = BatchPolicy(max_batch=32, max_wait_s=0.002)
    assert batch_wait(p, 1, backlog_seen=False, waited_s=0.0) == 0.0
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.0) == 0.002
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.0015) > 0
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.003) == 0.0
    assert batch_wait(p, 32, backlog_seen=True, waited_s=0.0) == 0.0
