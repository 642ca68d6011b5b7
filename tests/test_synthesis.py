"""The synthesis tier end to end: real ONNX embeddings, real SQLite, and the fake provider
over HTTP acting both as the upstream model and as the cheap synthesis model."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from fake_provider import FakeProvider, RecordedRequest, Reply

from cacheback.adapters.cli import main as cli_main
from cacheback.adapters.llm import OpenAICompatibleLLM
from cacheback.core._call import Text, UpstreamCall
from cacheback.core._costs import PriceTable, load_price_table
from cacheback.core._job import Job
from cacheback.core._settings import Settings
from cacheback.core._synthesis import (
    DECISION_CHARS,
    DECLINE_MARKER,
    Verdict,
    is_declined,
    judge_prefix,
)
from cacheback.core._types import LookupRequest, Tier
from cacheback.engine._engine import AsyncEngine

pytestmark = pytest.mark.anyio

CHEAP = "google/gemini-2.5-flash-lite"
UPSTREAM = "gpt-4o"
SYNTH_TEXT = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."


class Handler:
    """Makes the engine's upstream call (through the fake as gpt-4o) and notes what the
    engine handed back for a synthesized answer."""

    def __init__(self, llm: OpenAICompatibleLLM, question: str, *, streaming: bool = False) -> None:
        self.llm = llm
        self.question = question
        self._streaming = streaming
        self.upstream_usage: dict[str, Any] = {}
        self.synth_usage: dict[str, int] | None = None

    def call(self) -> UpstreamCall:
        async def send() -> tuple[str, str]:
            r = await self.llm.complete(
                [{"role": "user", "content": self.question}], max_tokens=200, timeout=5
            )
            self.upstream_usage = {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens}
            self.upstream_usage["model"] = r.model
            return ("upstream", r.text)

        def extract(response: tuple[str, str]) -> tuple[Text, dict[str, Any]]:
            return Text(response[1]), dict(self.upstream_usage)

        def no_stream() -> Any:
            raise AssertionError("the upstream model answers whole here")

        return UpstreamCall(send=send, streaming=self._streaming, extract=extract, reader=no_stream)


def reply_of(job: Job) -> tuple[str, Any]:
    """What the caller got: ("synthesis", text), ("stream", deltas) or ("upstream", text)."""
    if job.synthesis is not None:
        return ("synthesis", job.synthesis) if isinstance(job.synthesis, str) else ("stream", job.synthesis)
    assert job.response is not None
    return job.response  # type: ignore[no-any-return]


@dataclass
class Env:
    engine: AsyncEngine
    fake: FakeProvider
    upstream: OpenAICompatibleLLM

    async def ask(
        self, question: str, *, namespace: str | None = None, scope: str = "", streaming: bool = False
    ) -> tuple[Job, Handler]:
        handler = Handler(self.upstream, question, streaming=streaming)
        request = LookupRequest(question, scope=scope, namespace=namespace, want_synthesis=True)
        job = await self.engine.run(request, handler.call())
        assert job.error is None, job.error
        if job.synthesis is not None:
            handler.synth_usage = job.synthesis_usage  # filled in place once a stream ends
        return job, handler

    async def populate(
        self, question: str, answer: str, *, namespace: str | None = None, scope: str = ""
    ) -> int:
        return await self.engine.populate(LookupRequest(question, scope=scope, namespace=namespace), answer)

    def calls(self, model: str) -> int:
        return sum(1 for r in self.fake.requests("chat") if r.model == model)

    def cheap_request(self) -> RecordedRequest:
        found = [r for r in self.fake.requests("chat") if r.model == CHEAP]
        assert len(found) == 1, found
        return found[0]


@asynccontextmanager
async def running(cache_dir: Path, embedder: Any, fake: FakeProvider, **kw: Any) -> AsyncIterator[Env]:
    cheap = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-fake", model=CHEAP)
    upstream = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-fake", model=UPSTREAM)
    settings = Settings(cache_dir=cache_dir, **{"synthesis_mode": "auto", **kw})
    try:
        async with AsyncEngine(settings, embedder=embedder, llm=cheap) as engine:
            yield Env(engine, fake, upstream)
    finally:
        await cheap.aclose()
        await upstream.aclose()


def cheap_says(fake: FakeProvider, reply: Reply) -> None:
    """The cheap model answers with ``reply``; the upstream model answers normally."""
    fake.responder = lambda req: reply if req.model == CHEAP else None


async def wait_for_entries(engine: AsyncEngine, n: int) -> None:
    """The persister writes behind: poll until the store holds ``n`` entries."""
    for _ in range(250):
        if (await engine.admin.stats())["entries"] >= n:
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"the store never reached {n} entries")


async def seed_photosynthesis(env: Env) -> None:
    await env.populate("What is photosynthesis?", "Plants make sugar from light, water and CO2.")
    await env.populate("How do I reverse a list in Python?", "Use list.reverse() or slicing: xs[::-1].")


# -- the routing: which tier at which similarity ---------------------------------------------


async def test_auto_picks_verbatim_synthesis_or_upstream(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)

        job, _ = await env.ask("How can I reverse a list in Python?")  # similarity ~0.99
        assert job.outcome is not None and job.outcome.tier is Tier.VERBATIM
        assert env.calls(CHEAP) == 0 and env.calls(UPSTREAM) == 0

        job, handler = await env.ask("How does photosynthesis work?")  # 0.88: below 0.92, above 0.80
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        assert job.outcome.similarity is not None and 0.80 <= job.outcome.similarity < 0.92
        assert reply_of(job) == ("synthesis", SYNTH_TEXT)
        assert env.calls(CHEAP) == 1 and env.calls(UPSTREAM) == 0
        assert handler.synth_usage is not None and handler.synth_usage["output_tokens"] > 0

        job, _ = await env.ask("What is the boiling point of water?")  # ~0.27: upstream
        assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
        assert env.calls(CHEAP) == 1 and env.calls(UPSTREAM) == 1


async def test_always_synthesizes_even_over_a_verbatim_hit(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text="Call reverse() on the list."))
    async with running(cache_dir, embedder, fake, synthesis_mode="always") as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How can I reverse a list in Python?")
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        assert reply_of(job) == ("synthesis", "Call reverse() on the list.")
        job, _ = await env.ask("What is the boiling point of water?")
        assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
        assert env.calls(CHEAP) == 1 and env.calls(UPSTREAM) == 1


async def test_off_never_calls_the_cheap_model(cache_dir: Path, embedder: Any, fake: FakeProvider) -> None:
    async with running(cache_dir, embedder, fake, synthesis_mode="off") as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?")
        assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
        assert env.calls(CHEAP) == 0 and env.calls(UPSTREAM) == 1


async def test_a_higher_synthesis_threshold_sends_related_questions_upstream(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    async with running(cache_dir, embedder, fake, synthesis_threshold=0.95) as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?")
        assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
        assert env.calls(CHEAP) == 0


# -- the prompt: exactly the top-k of the caller's scope ------------------------------------------


async def test_prompt_holds_exactly_the_top_k_candidates_of_the_callers_scope(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text="About 520,000 people."))
    years = range(2015, 2022)
    async with running(cache_dir, embedder, fake, synthesis_top_k=3) as env:
        for y in years:
            q = f"What was the population of Lyon in {y}?"
            await env.populate(q, f"ANSWER-A-{y}", namespace="tenant-a")
            await env.populate(q, f"ANSWER-B-{y}", namespace="tenant-b")  # another tenant
            await env.populate(q, f"ANSWER-C-{y}", namespace="tenant-a", scope="other-model")  # another scope
        query = "What was the population of Lyon in 2023?"
        job, _ = await env.ask(query, namespace="tenant-a")
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS

        # The three nearest of tenant-a's own scope, by real similarity.
        vecs = embedder.embed([query] + [f"What was the population of Lyon in {y}?" for y in years])
        sims = {y: float(vecs[0] @ vecs[i + 1]) for i, y in enumerate(years)}
        expected = sorted(years, key=lambda y: -sims[y])[:3]
        assert sims[expected[-1]] >= 0.80

        prompt = json.dumps(env.cheap_request().body["messages"])
        assert prompt.count("<reference id=") == 3
        assert sorted(int(x) for x in _answers(prompt, "ANSWER-A-")) == sorted(expected)
        assert "ANSWER-B-" not in prompt and "ANSWER-C-" not in prompt
        assert query in prompt
        # Vetoed for verbatim (another year), kept for synthesis, with the guard's note.
        assert "date:2023!=" in prompt
        assert [c.entry.answer for c in job.outcome.candidates] == [f"ANSWER-A-{y}" for y in expected]


def _answers(text: str, prefix: str) -> list[str]:
    out = []
    start = text.find(prefix)
    while start >= 0:
        out.append(text[start + len(prefix) : start + len(prefix) + 4])
        start = text.find(prefix, start + 1)
    return out


# -- falling through to upstream ---------------------------------------------------------------------

FAILURES = {
    "declined": Reply(text=DECLINE_MARKER),
    "declined-decorated": Reply(text=f"`{DECLINE_MARKER}` The references do not say."),
    "error": Reply(status=500, error_message="boom"),
    "timeout": Reply(hang=True),
    "slow": Reply(text=SYNTH_TEXT, delay=2.0),
    "empty": Reply(text=""),
    "truncated": Reply(text=SYNTH_TEXT, finish_reason="length"),
}
EXPECTED_EVENT = {
    "declined": "declined",
    "declined-decorated": "declined",
    "error": "error",
    "timeout": "timeout",
    "slow": "timeout",
    "empty": "empty",
    "truncated": "truncated",
}


# A stream is handed over at its first answer delta, before a finish_reason can say it was
# cut short: see test_truncated_stream_after_hand_over_is_not_stored.
CASES = [(k, s) for k in FAILURES for s in (False, True) if not (k == "truncated" and s)]


CASE_IDS = [f"{k}-{'stream' if s else 'plain'}" for k, s in CASES]


@pytest.mark.parametrize(("kind", "streaming"), CASES, ids=CASE_IDS)
async def test_failed_synthesis_falls_through_with_one_upstream_call(
    cache_dir: Path, embedder: Any, fake: FakeProvider, kind: str, streaming: bool
) -> None:
    cheap_says(fake, FAILURES[kind])
    async with running(cache_dir, embedder, fake, synthesis_timeout_s=0.6) as env:
        await seed_photosynthesis(env)
        t0 = time.perf_counter()
        job, handler = await env.ask("How does photosynthesis work?", streaming=streaming)
        assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
        assert reply_of(job)[0] == "upstream"
        assert env.calls(CHEAP) == 1 and env.calls(UPSTREAM) == 1
        assert job.trace["synthesis"] == EXPECTED_EVENT[kind]
        assert handler.synth_usage is None  # the caller never saw the cheap model's reply
        assert time.perf_counter() - t0 < 5
        stats = await env.engine.admin.stats()
        assert stats["synthesis"]["attempts"] == {EXPECTED_EVENT[kind]: 1}
        assert stats["cost"]["synthesis"]["llm_calls"] == 1  # a failed attempt still counts
        assert stats["cost"]["upstream"]["llm_calls"] == 1


# -- streaming -----------------------------------------------------------------------------------------


async def test_streaming_synthesis_yields_deltas_as_the_model_produces_them(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT, chunk_delay=0.12))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)
        t0 = time.perf_counter()
        job, handler = await env.ask("How does photosynthesis work?", streaming=True)
        returned = time.perf_counter() - t0
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        kind, stream = reply_of(job)
        assert kind == "stream"
        arrivals: list[tuple[float, str]] = []
        async for piece in stream:
            arrivals.append((time.perf_counter() - t0, piece))
        words = len(SYNTH_TEXT.split())
        assert "".join(p for _, p in arrivals) == SYNTH_TEXT
        assert len(arrivals) == words  # delta by delta, not one block
        total = arrivals[-1][0]
        # The job was handed over after the first words, long before the model finished...
        assert returned < total - 0.12 * (words - 4)
        # ...and the rest arrived as it was produced.
        assert arrivals[-1][0] - arrivals[1][0] > 0.12 * (words - 4)
        assert env.calls(UPSTREAM) == 0
        assert handler.synth_usage is not None and handler.synth_usage["output_tokens"] == words
        stats = await env.engine.admin.stats()
        assert stats["cost"]["synthesis"]["output_tokens"] == words
        assert stats["synthesis"]["attempts"] == {"streamed": 1}


async def test_stream_that_starts_like_the_marker_is_still_an_answer(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    text = "CACHE is not the marker: CPython compiles to bytecode first."
    cheap_says(fake, Reply(text=text))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?", streaming=True)
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        assert "".join([p async for p in reply_of(job)[1]]) == text


async def test_abandoned_synthesis_stream_is_closed_and_accounted(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT, chunk_delay=0.05))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?", streaming=True)
        stream = reply_of(job)[1]
        await stream.__anext__()
        await stream.aclose()
        stats = await env.engine.admin.stats()
        assert stats["cost"]["synthesis"]["llm_calls"] == 1


async def test_truncated_stream_after_hand_over_is_not_stored(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT, finish_reason="length"))
    async with running(cache_dir, embedder, fake, synthesis_store=True) as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?", streaming=True)
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        assert "".join([p async for p in reply_of(job)[1]]) == SYNTH_TEXT
        await anyio.sleep(0.3)
        assert (await env.engine.admin.stats())["entries"] == 2


def test_decline_marker_rules() -> None:
    assert judge_prefix("") is Verdict.UNDECIDED
    assert judge_prefix("CACHE") is Verdict.UNDECIDED
    assert judge_prefix("**CACHEBACK_NO") is Verdict.UNDECIDED
    assert judge_prefix(DECLINE_MARKER) is Verdict.DECLINED
    assert judge_prefix("Photo") is Verdict.ANSWER
    assert judge_prefix("Cache") is Verdict.ANSWER  # case matters: the marker is upper case
    assert judge_prefix("CACHE", finished=True) is Verdict.ANSWER
    assert judge_prefix("  \n", finished=True) is Verdict.DECLINED
    assert judge_prefix(" " * DECISION_CHARS) is Verdict.DECLINED
    assert is_declined(None) and is_declined("  ") and is_declined(f"**{DECLINE_MARKER}**")
    assert is_declined(f"Some text. {DECLINE_MARKER}")
    assert not is_declined("Plants make sugar.")


# -- storing synthesized answers ------------------------------------------------------------------------


async def test_synthesized_answers_are_not_stored_by_default(
    cache_dir: Path, embedder: Any, fake: FakeProvider
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)
        for _ in range(2):
            job, _ = await env.ask("How does photosynthesis work?")
            assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        await anyio.sleep(0.2)
        assert (await env.engine.admin.stats())["entries"] == 2
        assert env.calls(CHEAP) == 2


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_synthesis_store_keeps_the_answer_as_a_verbatim_entry(
    cache_dir: Path, embedder: Any, fake: FakeProvider, streaming: bool
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT))
    async with running(cache_dir, embedder, fake, synthesis_store=True) as env:
        await seed_photosynthesis(env)
        job, _ = await env.ask("How does photosynthesis work?", streaming=streaming)
        assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
        if streaming:
            assert "".join([p async for p in reply_of(job)[1]]) == SYNTH_TEXT
        await wait_for_entries(env.engine, 3)
        again, _ = await env.ask("How does photosynthesis work?")
        assert again.outcome is not None and again.outcome.tier is Tier.EXACT
        assert again.outcome.entry is not None and again.outcome.entry.answer == SYNTH_TEXT
        assert again.outcome.entry.metadata.get("synthesized") is True
        assert env.calls(CHEAP) == 1


# -- cost accounting ------------------------------------------------------------------------------------


async def test_stats_count_tokens_and_money_per_tier(
    cache_dir: Path, embedder: Any, fake: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT))
    prices = PriceTable()
    async with running(cache_dir, embedder, fake) as env:
        up_job, up = await env.ask("What is photosynthesis?")  # empty cache: upstream
        assert up_job.outcome is not None and up_job.outcome.tier is Tier.UPSTREAM
        await wait_for_entries(env.engine, 1)
        entry = (await env.engine.admin.entries())[0]
        assert entry.metadata["usage"] == up.upstream_usage
        assert up.upstream_usage["model"] == UPSTREAM and up.upstream_usage["input_tokens"] > 0

        hit, _ = await env.ask("What is photosynthesis?")
        assert hit.outcome is not None and hit.outcome.tier is Tier.EXACT

        syn, handler = await env.ask("How does photosynthesis work?")
        assert syn.outcome is not None and syn.outcome.tier is Tier.SYNTHESIS
        su = handler.synth_usage
        assert su is not None

        stats = await env.engine.admin.stats()
    cost, savings = stats["cost"], stats["savings"]
    up_usd = prices.cost(UPSTREAM, up.upstream_usage["input_tokens"], up.upstream_usage["output_tokens"])
    syn_usd = prices.cost(CHEAP, su["input_tokens"], su["output_tokens"])
    assert up_usd is not None and syn_usd is not None and 0 < syn_usd < up_usd

    assert cost["upstream"]["requests"] == 1 and cost["upstream"]["llm_calls"] == 1
    assert cost["upstream"]["input_tokens"] == up.upstream_usage["input_tokens"]
    assert cost["upstream"]["output_tokens"] == up.upstream_usage["output_tokens"]
    assert cost["upstream"]["spent_usd"] == pytest.approx(up_usd, abs=1e-6)

    assert cost["exact"]["requests"] == 1 and cost["exact"]["llm_calls"] == 0
    assert cost["exact"]["saved_usd"] == pytest.approx(up_usd, abs=1e-6)

    assert cost["synthesis"]["requests"] == 1 and cost["synthesis"]["llm_calls"] == 1
    assert cost["synthesis"]["input_tokens"] == su["input_tokens"]
    assert cost["synthesis"]["output_tokens"] == su["output_tokens"]
    assert cost["synthesis"]["spent_usd"] == pytest.approx(syn_usd, abs=1e-6)
    # Its one candidate cost up_usd upstream: that is what the synthesis stands for.
    assert cost["synthesis"]["saved_usd"] == pytest.approx(up_usd, abs=1e-6)

    assert savings["spent_usd"] == pytest.approx(up_usd + syn_usd, abs=1e-5)
    assert savings["net_saved_usd"] == pytest.approx(2 * up_usd - syn_usd, abs=1e-5)
    assert 0 < savings["savings_rate"] < 1

    # The counters persist, and the CLI shows them.
    assert await anyio.to_thread.run_sync(cli_main, ["--cache-dir", str(cache_dir), "stats"]) == 0
    out = capsys.readouterr().out
    assert "cost (estimated USD)" in out and f"{up_usd:.6f}" in out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("synthesis "))
    assert row[1:4] == ["1", "1", str(su["input_tokens"])]


async def test_price_overrides_from_settings_and_file(
    cache_dir: Path, embedder: Any, fake: FakeProvider, tmp_path: Path
) -> None:
    async with running(cache_dir, embedder, fake, prices={"gpt-4o": {"input": 1000.0, "output": 0.0}}) as env:
        _, up = await env.ask("What is the boiling point of water?")
        stats = await env.engine.admin.stats()
    expected = up.upstream_usage["input_tokens"] * 1000.0 / 1e6
    assert stats["cost"]["upstream"]["spent_usd"] == pytest.approx(expected)

    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({"my-model": [1, 2], "gpt-4o": [3, 4]}))
    table = load_price_table({"gpt-4o": [5, 6]}, env={"CACHEBACK_PRICES": str(price_file)})
    assert table.cost("my-model", 1_000_000, 1_000_000) == 3.0
    assert table.cost("gpt-4o", 1_000_000, 0) == 5.0  # settings win over the file
    assert table.cost("unknown-model", 10, 10) is None


def test_price_lookup_normalises_model_ids() -> None:
    t = PriceTable()
    assert t.price("gpt-4o-2024-08-06") == t.price("gpt-4o")
    assert t.price("gpt-4o-mini-2024-07-18") == t.price("gpt-4o-mini") != t.price("gpt-4o")
    assert t.price("openai/gpt-4.1") == t.price("gpt-4.1") != t.price("gpt-4")
    assert t.price("claude-sonnet-4-20250514") == t.price("claude-sonnet-4")
    assert t.price("google/gemini-2.5-flash-lite") == t.price("gemini-2.5-flash-lite")
    assert t.price("gemini-2.5-flash-lite") != t.price("gemini-2.5-flash")
    assert t.price("gpt-4o-turbo-nonexistent") == t.price("gpt-4o")
    assert t.price("o1-mini") != t.price("o1")
    assert t.price("llama-3") is None and t.price("") is None


# -- default wiring ---------------------------------------------------------------------------------------


async def test_engine_builds_the_default_llm_from_settings(
    cache_dir: Path, embedder: Any, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-test-key")
    async with AsyncEngine(Settings(cache_dir=cache_dir, synthesis_mode="auto"), embedder=embedder) as engine:
        assert isinstance(engine.llm, OpenAICompatibleLLM)
        assert engine.llm.base_url == "https://openrouter.ai/api/v1"
        stats = await engine.admin.stats()
        assert stats["synthesis"]["llm"]["model"] == "google/gemini-2.5-flash-lite"
    assert engine.llm is None  # built by the engine, closed with it

    monkeypatch.delenv("OPENROUTER_API_KEY")
    upstream = OpenAICompatibleLLM(base_url=fake.openai_base_url, api_key="sk-fake", model=UPSTREAM)
    try:
        async with AsyncEngine(
            Settings(cache_dir=cache_dir, synthesis_mode="auto"), embedder=embedder
        ) as engine:
            assert engine.llm is None
            env = Env(engine, fake, upstream)
            await seed_photosynthesis(env)
            job, _ = await env.ask("How does photosynthesis work?")
            assert job.outcome is not None and job.outcome.tier is Tier.UPSTREAM
            assert env.calls(UPSTREAM) == 1 and len(fake.requests("chat")) == 1
    finally:
        await upstream.aclose()


async def test_synthesis_never_blocks_the_event_loop(
    cache_dir: Path, embedder: Any, fake: FakeProvider, blocking_detector: Any
) -> None:
    cheap_says(fake, Reply(text=SYNTH_TEXT))
    async with running(cache_dir, embedder, fake) as env:
        await seed_photosynthesis(env)
        # The hit guard reads its model file once, lazily, on first use (not this test's
        # concern): load it now.
        from cacheback.guard import shipped_model

        shipped_model()
        blocking_detector.install()  # before the adapter's first call builds its HTTP client
        job, _ = await env.ask("How does photosynthesis work?")
        streamed, _ = await env.ask("How does photosynthesis work?", streaming=True)
        assert "".join([p async for p in reply_of(streamed)[1]]) == SYNTH_TEXT
        await env.ask("What is the boiling point of water?")
        await env.engine.admin.stats()
        blocking_detector.uninstall()
    assert job.outcome is not None and job.outcome.tier is Tier.SYNTHESIS
    assert blocking_detector.calls == []
