"""``cacheback eval synthesis`` end to end: the fake provider is upstream, cheap model and judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider, RecordedRequest, Reply, start_fake_provider

from cacheback.adapters.cli import main as cli_main
from cacheback.adapters.eval import synthesis_eval_main
from cacheback.adapters.eval._synthesis_eval import load_questions, parse_judge_scores
from cacheback.core._synthesis import DECLINE_MARKER

CHEAP = "google/gemini-2.5-flash-lite"
JUDGE = "gpt-4o-mini"
UPSTREAM = "gpt-4o"

QUESTIONS = [
    # ~0.91 to its seed: synthesized
    {
        "question": "How does photosynthesis work?",
        "seed_questions": ["What is photosynthesis?"],
        "domain": "biology",
    },
    # ~0.84 to a seed that brings its own answer: synthesized
    {
        "question": "How do plants use sunlight to make energy?",
        "seeds": [{"question": "How do plants make food from sunlight?", "answer": "By photosynthesis."}],
        "domain": "biology",
    },
    # nothing related: upstream
    {"question": "What is the boiling point of water?", "domain": "physics"},
    # a paraphrase of its seed: verbatim
    {
        "question": "How can I reverse a list in Python?",
        "seed_questions": ["How do I reverse a list in Python?"],
    },
    # related, but the cheap model declines: upstream
    {
        "question": "What is the role of chlorophyll in photosynthesis?",
        "seed_questions": ["What does chlorophyll do in plants?"],
    },
]


def responder(req: RecordedRequest) -> Reply | None:
    if req.model == JUDGE:
        return Reply(text='Scores: {"reference": 9, "candidate": 8}')
    if req.model == CHEAP:
        prompt = json.dumps(req.body.get("messages"))
        if "NEW question: What is the role of chlorophyll" in prompt:
            return Reply(text=DECLINE_MARKER)
        return Reply(text="A synthesized answer built from the cached ones.", chunk_delay=0.01)
    return None  # upstream: the fake's default answer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with start_fake_provider() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    server.reset()
    server.responder = responder
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    return server


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


def argv(fake: FakeProvider, questions: Path, *extra: str) -> list[str]:
    return [
        str(questions),
        "--upstream-base-url", fake.openai_base_url,
        "--upstream-model", UPSTREAM,
        "--upstream-key-env", "FAKE_PROVIDER_KEY",
        "--synthesis-base-url", fake.openai_base_url,
        "--synthesis-model", CHEAP,
        "--synthesis-key-env", "FAKE_PROVIDER_KEY",
        "--judge-model", JUDGE,
        "--concurrency", "1",
        *extra,
    ]  # fmt: skip


def models(fake: FakeProvider) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in fake.requests("chat"):
        out[r.model] = out.get(r.model, 0) + 1
    return out


def test_eval_replays_the_three_tiers_and_reports_the_quality_ratio(
    fake: FakeProvider, questions: Path, tmp_path: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    assert synthesis_eval_main(argv(fake, questions, "--out", str(out)), embedder=embedder) == 0
    text = capsys.readouterr().out
    assert "questions            5" in text
    assert "tiers                synthesis=2, upstream=2, verbatim=1" in text
    assert "mean quality ratio   0.889" in text  # 8 / 9
    assert "synthesis is" in text and "cheaper than upstream" in text

    # 3 seed questions + 2 upstream tiers (one after a decline) + 2 references.
    assert models(fake) == {UPSTREAM: 7, CHEAP: 3, JUDGE: 2}
    judged = [r for r in fake.requests("chat") if r.model == JUDGE]
    assert all("<candidate_answer>" in json.dumps(r.body["messages"]) for r in judged)
    assert all(r.headers["authorization"] == "Bearer sk-fake" for r in fake.requests("chat"))

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tier"] for r in rows] == ["synthesis", "synthesis", "upstream", "verbatim", "upstream"]
    assert rows[0]["ratio"] == pytest.approx(8 / 9) and rows[0]["reference_score"] == 9
    assert rows[2]["ratio"] is None


def test_eval_json_report_through_the_streaming_path(
    fake: FakeProvider, questions: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synthesis_eval_main(argv(fake, questions, "--json", "--stream"), embedder=embedder) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 5 and report["judged"] == 2
    assert report["tiers"] == {"synthesis": 2, "upstream": 2, "verbatim": 1}
    assert report["mean_quality_ratio"] == pytest.approx(8 / 9)
    per = report["cost_per_answer_usd"]
    assert per["verbatim"] == 0.0
    assert 0 < per["synthesis"] < per["upstream"]
    assert report["engine_cost"]["synthesis"]["llm_calls"] == 3  # the declined attempt too
    assert report["eval_spend"]["judge"]["calls"] == 2


def test_cli_dispatches_eval_synthesis(
    fake: FakeProvider, questions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["eval", "synthesis", *argv(fake, questions, "--limit", "2")]) == 0
    assert "mean quality ratio   0.889" in capsys.readouterr().out


def test_eval_refuses_missing_keys_and_bad_input(
    fake: FakeProvider, questions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argv(fake, questions)
    args[args.index("FAKE_PROVIDER_KEY")] = "NO_SUCH_KEY_VARIABLE"
    assert synthesis_eval_main(args, embedder=None) == 2
    assert "NO_SUCH_KEY_VARIABLE" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seed_questions": ["x"]}\n')
    assert synthesis_eval_main(argv(fake, bad), embedder=None) == 1
    assert fake.count() == 0


def test_question_set_formats(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": "q1", "seeds": [{"question": "s", "answer": "a"}]}]))
    items = load_questions(path)
    assert items[0].question == "q1" and items[0].seeds == (("s", "a"),)


def test_judge_score_parsing() -> None:
    assert parse_judge_scores('{"reference": 8, "candidate": 6.5}') == (8.0, 6.5)
    assert parse_judge_scores('```json\n{"candidate": 12, "reference": 7}\n```') == (7.0, 10.0)
    assert parse_judge_scores("Reference: 9/10, candidate: 7/10") == (9.0, 7.0)
    assert parse_judge_scores("no idea") is None
