"""The tier decision and batching policy are pure: no event loop needed."""

from __future__ import annotations

from cacheback.engine._batching import BatchPolicy, batch_wait
from cacheback.engine._routing import cosine_rule, route
from cacheback.engine._types import CacheEntry, Candidate, Tier


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
        return (False, ("number:1!=2")) if c == "bad" else (s >= t, ())

    d = decide([cand(0.99, "bad", 1), cand(0.95, "good", 2)], rule=rule)
    assert d.tier is Tier.VERBATIM and d.best is not None and d.best.entry_id == 2
    only_bad = decide([cand(0.99, "bad", 1)], rule=rule)
    assert only_bad.tier is Tier.MISS and only_bad.guard_reasons


def test_batch_wait_never_waits_without_backlog() -> None:
    p = BatchPolicy(max_batch=32, max_wait_s=0.002)
    assert batch_wait(p, 1, backlog_seen=False, waited_s=0.0) == 0.0
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.0) == 0.002
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.0015) > 0
    assert batch_wait(p, 5, backlog_seen=True, waited_s=0.003) == 0.0
    assert batch_wait(p, 32, backlog_seen=True, waited_s=0.0) == 0.0
