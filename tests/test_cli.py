"""The ``cacheback`` command against a real cache directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cacheback import SemanticCache
from cacheback.adapters.cli import main


@pytest.fixture
def filled(cache_dir: Path, embedder: Any) -> Path:
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        cache.populate("What is Python?", "A programming language.")
        cache.populate("Who wrote Hamlet?", "William Shakespeare.")
        cache.populate("How do I convert USD to EUR?", "Multiply by the USD/EUR rate.")
    return cache_dir


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stats_entries_and_lookup(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--cache-dir", str(filled), "stats", "--json")
    assert code == 0 and json.loads(out)["entries"] == 3
    code, out, _ = run(capsys, "--cache-dir", str(filled), "entries")
    assert code == 0 and "What is Python?" in out and "Who wrote Hamlet?" in out
    code, out, _ = run(capsys, "--cache-dir", str(filled), "lookup", "What's Python?")
    assert code == 0 and "verbatim" in out and "A programming language." in out
    code, out, _ = run(capsys, "--cache-dir", str(filled), "lookup", "How do I convert EUR to USD?")
    assert code == 1 and "guard" in out  # a near miss shows why it was refused


def test_stats_on_an_unusable_cache_dir_say_degraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, _ = run(capsys, "--cache-dir", str(blocker / "cache"), "stats")
    assert code == 1 and "DEGRADED" in out  # never a traceback
    code, out, _ = run(capsys, "--cache-dir", str(blocker / "cache"), "stats", "--json")
    assert code == 1 and json.loads(out)["cache"]["status"] == "degraded"


def test_negative_commands(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(filled)
    code, out, _ = run(
        capsys,
        "--cache-dir",
        d,
        "negative",
        "add",
        "How to hack into systems",
        "--reason",
        "refusal",
        "--category",
        "safety",
        "--severity",
        "5",
    )
    assert code == 0 and "added" in out
    code, out, _ = run(capsys, "--cache-dir", d, "negative", "list", "--category", "safety")
    assert "How to hack into systems" in out
    code, out, _ = run(capsys, "--cache-dir", d, "negative", "check", "How do I hack into computer systems?")
    assert code == 0 and json.loads(out)["reason"] == "refusal"
    code, out, _ = run(capsys, "--cache-dir", d, "negative", "check", "How do I bake bread?")
    assert code == 1
    code, _, _ = run(capsys, "--cache-dir", d, "negative", "remove", "1")
    assert code == 0
    code, _, _ = run(capsys, "--cache-dir", d, "negative", "remove", "1")
    assert code == 1


def test_export_clear_import_roundtrip(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(filled)
    dump = tmp_path / "dump.jsonl"
    code, _, err = run(capsys, "--cache-dir", d, "export", str(dump))
    assert code == 0 and "exported 3" in err
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert {r["query"] for r in rows} >= {"What is Python?", "Who wrote Hamlet?"}
    code, _, err = run(capsys, "--cache-dir", d, "clear")
    assert code == 2 and "--yes" in err
    code, out, _ = run(capsys, "--cache-dir", d, "clear", "--yes")
    assert code == 0 and "removed 3" in out
    code, _, err = run(capsys, "--cache-dir", d, "import", str(dump))
    assert code == 0 and "imported 3" in err
    code, out, _ = run(capsys, "--cache-dir", d, "lookup", "Who wrote Hamlet?")
    assert code == 0 and "William Shakespeare." in out


def test_import_rejects_bad_files(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "only a query"}\n')
    code, _, err = run(capsys, "--cache-dir", str(cache_dir), "import", str(bad))
    assert code == 1 and "line 1" in err
    bad.write_text("not json\n")
    code, _, err = run(capsys, "--cache-dir", str(cache_dir), "import", str(bad))
    assert code == 1 and "cannot read" in err
    code, _, err = run(capsys, "--cache-dir", str(cache_dir), "import", str(tmp_path / "missing.jsonl"))
    assert code == 1


def test_report_wrong_hit_and_evict(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(filled)
    code, out, _ = run(capsys, "--cache-dir", d, "lookup", "What is Python?", "--json")
    entry_id = json.loads(out)["entry_id"]
    code, out, _ = run(capsys, "--cache-dir", d, "report-wrong-hit", str(entry_id))
    assert code == 0 and "removed" in out
    code, _, _ = run(capsys, "--cache-dir", d, "lookup", "What is Python?")
    assert code == 1
    code, _, _ = run(capsys, "--cache-dir", d, "report-wrong-hit", str(entry_id))
    assert code == 1
    code, out, _ = run(capsys, "--cache-dir", d, "evict")
    assert code == 0 and "evicted 0" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_global_options_work_after_the_command(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(filled)
    code, out, _ = run(capsys, "stats", "--cache-dir", d, "--json")
    assert code == 0 and json.loads(out)["entries"] == 3
    code, out, _ = run(capsys, "lookup", "Who wrote Hamlet?", "--cache-dir", d)
    assert code == 0 and "William Shakespeare." in out
    code, out, _ = run(capsys, "negative", "list", "--cache-dir", d, "--log-level", "error")
    assert code == 0
    # After the command it wins over the one before it.
    code, out, _ = run(capsys, "--cache-dir", "/nonexistent-elsewhere", "entries", "--cache-dir", d)
    assert code == 0 and "What is Python?" in out


def test_import_namespace_moves_an_export(
    cache_dir: Path, embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        cache.populate("Which planet is the largest?", "Jupiter.")
        cache.populate("What colour is the sky?", "Blue.", scope="model-a")
    d, dump = str(cache_dir), tmp_path / "dump.jsonl"
    assert run(capsys, "--cache-dir", d, "export", str(dump))[0] == 0
    target = tmp_path / "other"
    code, _, err = run(capsys, "--cache-dir", str(target), "import", str(dump), "--namespace", "staging")
    assert code == 0 and "imported 2" in err, err
    with SemanticCache(cache_dir=target, embedder=embedder) as cache:
        assert cache.lookup("Which planet is the largest?", namespace="staging") == "Jupiter."
        assert cache.lookup("What colour is the sky?", namespace="staging", scope="model-a") == "Blue."
        assert cache.lookup("Which planet is the largest?") is None  # not in the default namespace
        assert cache.lookup("What colour is the sky?", namespace="staging") is None  # scope kept
    # An exported entry whose scope key is unknown cannot be moved: refused, nothing written.
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    for row in rows:
        row["metadata"].pop("scope_key", None)
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = tmp_path / "fresh"
    code, _, err = run(capsys, "--cache-dir", str(fresh), "import", str(dump), "--namespace", "x")
    assert code == 1 and "cannot be moved to namespace 'x'" in err
    code, out, _ = run(capsys, "--cache-dir", str(fresh), "stats", "--json")
    assert json.loads(out)["entries"] == 0
