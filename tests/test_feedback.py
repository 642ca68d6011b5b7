"""Per-entry thresholds from feedback: the pure decision (no event loop), then the engine with
real ONNX embeddings and real SQLite files, then the proxy over real HTTP."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from _proxy_helpers import chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache
from cacheback.core._feedback import (
    NO_PARAPHRASE,
    FeedbackPolicy,
    Served,
    ServedHits,
    Verdict,
    after_feedback,
    effective_threshold,
    parse_verdict,
    passes_entry_threshold,
    should_verify,
    verify_messages,
)
from cacheback.core._routing import cosine_rule, route
from cacheback.core._types import CacheEntry, Candidate, Tier

POLICY = FeedbackPolicy(margin=0.02, relax_step=0.002)

# A wrong hit the guard lets through (a router's Wi-Fi password is not its admin password),
# paraphrases of that wrong question, and right paraphrases of the stored one.
STORED = "How do I reset the password on my home router?"
WRONG = "How do I reset the wifi password on my home router?"
WRONG_PARAPHRASES = (
    "How do I reset the wifi password of my home router?",
    "How do I reset my home router's wifi password?",
    "how do i reset the wifi password on my home router",
)
RIGHT_PARAPHRASES = (
    "How can I reset the password on my home router?",
    "How do I reset my home router's password?",
)


# --- the pure decision ---------------------------------------------------------------------------


def test_an_entry_without_its_own_threshold_passes_every_candidate() -> None:
    assert passes_entry_threshold(0.5, None)
    assert effective_threshold(0.92, None) == 0.92


def test_a_candidate_must_reach_its_entrys_own_threshold() -> None:
    assert not passes_entry_threshold(0.9499, 0.95)
    assert passes_entry_threshold(0.95, 0.95)
    assert effective_threshold(0.92, 0.95) == 0.95
    assert effective_threshold(0.96, 0.95) == 0.96  # the global one still applies


def test_a_wrong_hit_raises_the_threshold_above_its_similarity_by_the_margin() -> None:
    assert after_feedback(None, Verdict.WRONG, global_threshold=0.92, similarity=0.934, policy=POLICY) == (
        0.954
    )
    # Never lower than before: a second report nearer to the global threshold keeps it.
    assert after_feedback(0.97, Verdict.WRONG, global_threshold=0.92, similarity=0.93, policy=POLICY) == 0.97
    assert after_feedback(0.954, Verdict.WRONG, global_threshold=0.92, similarity=0.96, policy=POLICY) == 0.98
    # Near 1.0 it is capped where no paraphrase passes at all.
    assert after_feedback(None, Verdict.WRONG, global_threshold=0.92, similarity=0.999, policy=POLICY) == (
        NO_PARAPHRASE
    )
    assert not passes_entry_threshold(1.0, NO_PARAPHRASE)


def test_a_wrong_hit_at_an_unknown_similarity_allows_no_paraphrase() -> None:
    assert after_feedback(None, Verdict.WRONG, global_threshold=0.92, similarity=None) == NO_PARAPHRASE


def test_a_wrong_hit_below_a_raised_global_threshold_still_lifts_above_it() -> None:
    assert after_feedback(None, Verdict.WRONG, global_threshold=0.97, similarity=0.93, policy=POLICY) == 0.97


def test_correct_hits_relax_a_step_at_a_time_never_below_the_global_threshold() -> None:
    t: float | None = 0.93
    steps = 0
    while t is not None:
        t = after_feedback(t, Verdict.CORRECT, global_threshold=0.92, similarity=None, policy=POLICY)
        steps += 1
        assert t is None or t > 0.92
    assert steps == 5  # 0.928, 0.926, 0.924, 0.922, then the global threshold: cleared
    assert after_feedback(None, Verdict.CORRECT, global_threshold=0.92, similarity=None) is None
    # Under a global threshold raised since, the entry's own one is simply cleared.
    assert after_feedback(0.95, Verdict.CORRECT, global_threshold=0.96, similarity=None) is None


def test_the_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        FeedbackPolicy(margin=-0.1)
    with pytest.raises(ValueError):
        FeedbackPolicy(relax_step=0.5)


def _candidate(entry_id: int, text: str, similarity: float, threshold: float | None = None) -> Candidate:
    entry = CacheEntry(entry_id, "s", text, f"answer {entry_id}", None, 0.0, float("inf"), 0.0,
                       hit_threshold=threshold)  # fmt: skip
    return Candidate(entry, similarity)


def test_an_entry_below_its_own_threshold_fences_off_the_less_similar_ones() -> None:
    # The query is where a reported wrong hit was: the next candidate is not served either.
    candidates = [_candidate(1, "a", 0.95, threshold=0.96), _candidate(2, "b", 0.94)]
    d = route("q", candidates, similarity_threshold=0.92, synthesis_threshold=0.8,
              synthesis_mode="off", verbatim_rule=cosine_rule)  # fmt: skip
    assert d.tier is Tier.MISS
    assert [c.guard_reasons for c in d.candidates] == [("feedback",), ("feedback",)]
    # A more similar candidate that passes is served as before.
    ahead = [_candidate(3, "c", 0.97), *candidates]
    d = route("q", ahead, similarity_threshold=0.92, synthesis_threshold=0.8,
              synthesis_mode="off", verbatim_rule=cosine_rule)  # fmt: skip
    assert d.tier is Tier.VERBATIM and d.best is not None and d.best.entry.id == 3


def test_the_router_reports_feedback_as_the_reason_of_a_miss() -> None:
    d = route("q", [_candidate(1, "a", 0.95, threshold=0.96)], similarity_threshold=0.92,
              synthesis_threshold=0.8, synthesis_mode="off", verbatim_rule=cosine_rule)  # fmt: skip
    assert d.tier is Tier.MISS and d.guard_reasons == ("feedback",)
    passing = route("q", [_candidate(1, "a", 0.97, threshold=0.96)], similarity_threshold=0.92,
                    synthesis_threshold=0.8, synthesis_mode="off", verbatim_rule=cosine_rule)  # fmt: skip
    assert passing.tier is Tier.VERBATIM


def test_served_hits_remember_the_latest_hit_per_entry() -> None:
    served = ServedHits(capacity=2)
    served.record(1, "verbatim", 0.93)
    served.record(1, "verbatim", 0.95)
    assert served.get(1) == Served("verbatim", 0.95)
    served.record(1, "exact", 1.0)
    assert served.get(1) == Served("exact", 1.0)
    served.record(2, "exact", 1.0)
    served.record(3, "exact", 1.0)  # over capacity: the least recent (1) goes
    assert served.get(1) is None and served.get(3) is not None
    served.forget(3)
    assert served.get(3) is None


def test_served_hits_add_nothing_for_the_garbage_collector_to_walk() -> None:
    served = ServedHits(capacity=5_000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5_000):
        served.record(i, "verbatim", 0.9 + i / 1e5)
    gc.collect()  # a collection stops tracking tuples of atoms
    assert len(gc.get_objects()) - before < 100


def test_the_judges_reply_reads_as_a_verdict() -> None:
    assert parse_verdict("Yes.") is Verdict.CORRECT
    assert parse_verdict("  no, it answers another question") is Verdict.WRONG
    assert parse_verdict("**No**") is Verdict.WRONG
    assert parse_verdict("Maybe") is None and parse_verdict("") is None


def test_the_judge_sees_the_question_and_a_bounded_answer() -> None:
    messages = verify_messages("How deep is Loch Ness?", "About 230 metres." + "x" * 10_000)
    prompt = messages[-1]["content"]
    assert "How deep is Loch Ness?" in prompt and "About 230 metres." in prompt
    assert len(prompt) < 4200 and prompt.rstrip().endswith("yes or no?")


def test_a_share_of_hits_is_sampled() -> None:
    assert not should_verify(0.0, 0.0)
    assert should_verify(0.25, 0.2) and not should_verify(0.25, 0.3)
    assert should_verify(1.0, 0.999)


# --- the engine, with real embeddings -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reported_wrong_paraphrase_hit_is_not_served_again_to_its_neighbourhood(
    cache_dir: Path, embedder: Any
) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        entry_id = await cache.populate(STORED, "Hold the reset button for 30 seconds.")
        right_before = {q: (await cache.lookup_detailed(q)).tier for q in RIGHT_PARAPHRASES}
        assert set(right_before.values()) == {"verbatim"}
        wrong = await cache.lookup_detailed(WRONG)
        assert wrong.tier == "verbatim" and wrong.entry_id == entry_id and wrong.similarity is not None
        # The report names only the entry: the engine knows the similarity of its latest hit.
        assert await cache.report_wrong_hit(entry_id)
        stored = await cache.engine.admin.get(entry_id)
        assert stored is not None and stored.hit_threshold == pytest.approx(wrong.similarity + 0.02, abs=1e-4)
        for query in (WRONG, *WRONG_PARAPHRASES):
            again = await cache.lookup_detailed(query)
            assert again.tier == "miss", query
            assert again.candidates[0]["guard_reasons"] == ["feedback"], query
        for query in RIGHT_PARAPHRASES:  # nearer paraphrases of the stored question still hit
            assert (await cache.lookup_detailed(query)).tier == "verbatim", query
        assert (await cache.lookup_detailed(STORED)).tier == "exact"
        counts = (await cache.stats())["feedback"]
        assert counts["wrong_hits_reported"] == 1 and counts["correct_hits_reported"] == 0
    # Stored with the entry: a restarted cache does not serve it either.
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        assert (await cache.lookup_detailed(WRONG)).tier == "miss"
        assert (await cache.lookup_detailed(RIGHT_PARAPHRASES[0])).tier == "verbatim"


@pytest.mark.anyio
async def test_correct_reports_relax_the_threshold_back_to_the_global_one(
    cache_dir: Path, embedder: Any
) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        entry_id = await cache.populate(STORED, "Hold the reset button for 30 seconds.")
        assert await cache.report_wrong_hit(entry_id, similarity=0.93)
        stored = await cache.engine.admin.get(entry_id)
        assert stored is not None and stored.hit_threshold == pytest.approx(0.95)
        reports = 0
        while stored is not None and stored.hit_threshold is not None:
            assert await cache.report_correct_hit(entry_id)
            reports += 1
            stored = await cache.engine.admin.get(entry_id)
        assert reports == 15  # (0.95 - 0.92) / 0.002 steps, never below 0.92
        assert (await cache.lookup_detailed(WRONG)).tier == "verbatim"  # the global rule again
        assert not await cache.report_correct_hit(10**9)
        assert not await cache.report_wrong_hit(10**9)


@pytest.mark.anyio
async def test_a_wrong_exact_hit_or_an_unknown_one_removes_the_entry(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        exact_id = await cache.populate(STORED, "Hold the reset button for 30 seconds.")
        assert (await cache.lookup_detailed(STORED)).tier == "exact"
        assert await cache.report_wrong_hit(exact_id)  # the answer is wrong for its own question
        assert await cache.engine.admin.get(exact_id) is None
        unseen = await cache.populate(WRONG, "Open the router's wireless settings page.")
        assert await cache.report_wrong_hit(unseen)  # never served here: no similarity known
        assert await cache.engine.admin.get(unseen) is None


@pytest.mark.anyio
async def test_feedback_settings_are_checked(cache_dir: Path, embedder: Any) -> None:
    from cacheback.core._errors import ConfigError
    from cacheback.core._settings import Settings

    with pytest.raises(ConfigError, match="feedback_margin"):
        Settings(cache_dir=cache_dir, feedback_margin=0.5)
    assert Settings.from_env({"CACHEBACK_FEEDBACK_MARGIN": "0.05"}).feedback_margin == 0.05
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder,
                                  feedback_margin=0.0) as cache:  # fmt: skip
        entry_id = await cache.populate(STORED, "Hold the reset button for 30 seconds.")
        assert await cache.report_wrong_hit(entry_id, similarity=0.94)
        stored = await cache.engine.admin.get(entry_id)
        assert stored is not None and stored.hit_threshold == pytest.approx(0.94)


# --- the proxy --------------------------------------------------------------------------------------

AUTH = {"Authorization": "Bearer sk-feedback-test"}  # passed through to the fake provider


def test_the_proxy_takes_the_hits_similarity_and_reports_the_new_threshold(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px, px.http(headers=AUTH) as http:
        first = http.post("/v1/chat/completions", json=chat_body(STORED))
        assert first.headers["x-cacheback-tier"] == "upstream"
        hit = http.post("/v1/chat/completions", json=chat_body(WRONG))
        assert hit.headers["x-cacheback-tier"] == "verbatim"
        entry_id = int(hit.headers["x-cacheback-entry-id"])
        similarity = float(hit.headers["x-cacheback-similarity"])
        bad = http.post("/v1/cache/report-wrong-hit", json={"entry_id": entry_id, "similarity": 1.5})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "similarity"
        report = http.post("/v1/cache/report-wrong-hit", json={"entry_id": entry_id,
                                                              "similarity": similarity})  # fmt: skip
        assert report.status_code == 200
        body = report.json()
        assert body["removed"] is False and body["hit_threshold"] == pytest.approx(similarity + 0.02)
        again = http.post("/v1/chat/completions", json=chat_body(WRONG))
        assert again.headers["x-cacheback-tier"] == "upstream"
        relaxed = http.post("/v1/cache/report-correct-hit", json={"entry_id": entry_id})
        assert relaxed.json()["hit_threshold"] == pytest.approx(similarity + 0.018)


# --- sampled verification by the cheap model ---------------------------------------------------


async def _entry_threshold(engine: Any, entry_id: int, *, changed_from: float | None) -> float | None:
    """The entry's own threshold once the background check changed it (or after 10 s)."""
    import anyio

    with anyio.move_on_after(10):
        while True:
            entry = await engine.admin.get(entry_id)
            if entry is not None and entry.hit_threshold != changed_from:
                return entry.hit_threshold  # type: ignore[no-any-return]
            await anyio.sleep(0.02)
    entry = await engine.admin.get(entry_id)
    return None if entry is None else entry.hit_threshold  # type: ignore[no-any-return]


@pytest.mark.anyio
async def test_a_sampled_check_that_says_no_raises_the_entrys_threshold(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    from cacheback.adapters.llm import OpenAICompatibleLLM

    judge = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-fake", model="judge-mini")
    try:
        await _check_no_then_yes(judge, fake, cache_dir, embedder)
    finally:
        await judge.aclose()


async def _check_no_then_yes(judge: Any, fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    from fake_provider import Reply

    from cacheback.core._settings import Settings
    from cacheback.core._types import LookupRequest
    from cacheback.engine._engine import AsyncEngine

    settings = Settings(cache_dir=cache_dir, feedback_verify_rate=1.0)
    async with AsyncEngine(settings, embedder=embedder, llm=judge) as engine:
        entry_id = await engine.populate(LookupRequest(query=STORED), "Hold the reset button for 30 seconds.")
        fake.script(Reply(text="No."), endpoint="chat")
        hit = await engine.lookup(LookupRequest(query=WRONG))
        assert hit.tier is Tier.VERBATIM and hit.similarity is not None  # served at once
        threshold = await _entry_threshold(engine, entry_id, changed_from=None)
        assert threshold == pytest.approx(hit.similarity + 0.02, abs=1e-4)
        judged = fake.last_request("chat")
        assert judged.model == "judge-mini" and WRONG in str(judged.body)
        assert (await engine.lookup(LookupRequest(query=WRONG))).tier is Tier.MISS
        # A check that says yes relaxes it a step.
        fake.script(Reply(text="Yes"), endpoint="chat")
        right = await engine.lookup(LookupRequest(query=RIGHT_PARAPHRASES[0]))
        assert right.tier is Tier.VERBATIM
        relaxed = await _entry_threshold(engine, entry_id, changed_from=threshold)
        assert relaxed == pytest.approx(threshold - 0.002)
        counts = (await engine.admin.stats())["feedback"]
        assert counts["verify_wrong"] == 1 and counts["verify_correct"] == 1
        assert counts["wrong_hits_reported"] == 0  # a check is not a user's report


@pytest.mark.anyio
async def test_verification_is_off_by_default_and_a_failed_check_changes_nothing(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    from cacheback.adapters.llm import OpenAICompatibleLLM

    judge = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-fake", model="judge-mini")
    try:
        await _off_then_failing(judge, fake, cache_dir, embedder)
    finally:
        await judge.aclose()


async def _off_then_failing(judge: Any, fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    import anyio

    from cacheback.core._settings import Settings
    from cacheback.core._types import LookupRequest
    from cacheback.engine._engine import AsyncEngine

    async with AsyncEngine(Settings(cache_dir=cache_dir), embedder=embedder, llm=judge) as engine:
        await engine.populate(LookupRequest(query=STORED), "Hold the reset button for 30 seconds.")
        assert (await engine.lookup(LookupRequest(query=WRONG))).tier is Tier.VERBATIM
        await anyio.sleep(0.2)
        assert fake.count("chat") == 0
    settings = Settings(cache_dir=cache_dir, feedback_verify_rate=1.0)
    async with AsyncEngine(settings, embedder=embedder, llm=judge) as engine:
        fake.fail_next(500, endpoint="chat")
        hit = await engine.lookup(LookupRequest(query=WRONG))
        assert hit.tier is Tier.VERBATIM and hit.entry is not None
        for _ in range(500):  # the check runs in the background: up to 10 s
            if (await engine.admin.stats())["feedback"]["verify_failed"]:
                break
            await anyio.sleep(0.02)
        entry = await engine.admin.get(hit.entry.id)
        assert entry is not None and entry.hit_threshold is None
        assert (await engine.admin.stats())["feedback"]["verify_failed"] == 1
