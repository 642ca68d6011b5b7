"""The hit-quality evaluation: counts on tiny files with hand-placed vectors, plot, CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from cacheback.adapters.eval import (
    EvalReport,
    eval_main,
    format_report,
    plot_pr,
    run_pairwise,
    run_retrieval,
)
from cacheback.adapters.eval._split import Split, in_split, split_of
from cacheback.core._types import match_text

DIM = 12


def _unit(*coords: tuple[int, float]) -> NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    for axis, value in coords:
        v[axis] = value
    return v / np.linalg.norm(v)


def _pair_vectors(axis: int, cosine: float) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Two unit vectors on their own plane with the given cosine."""
    return _unit((axis, 1.0)), _unit((axis, cosine), (axis + 1, float(np.sqrt(1 - cosine**2))))


class FakeEmbed:
    """Looks vectors up by text, so every cosine in a test is chosen by hand (the eval
    embeds the engine's match text, so the table is keyed by it)."""

    def __init__(self, table: dict[str, NDArray[np.float32]]) -> None:
        self.table = {match_text(text): vector for text, vector in table.items()}
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        return np.stack([self.table[t] for t in texts])


# (question1, question2, label, cosine): what each rule should do is in the comment.
PAIRS = [
    ("How do I boil an egg?", "How can I boil an egg?", 1, 0.97),  # both: correct
    ("Convert 100 USD to EUR", "Convert 100 EUR to USD", 0, 0.98),  # plain wrong; vetoed
    ("What's new in Python 3.11?", "What's new in Python 3.12?", 0, 0.96),  # same
    ("What is a black hole?", "What exactly is a black hole?", 1, 0.90),  # both miss
    ("Is tea healthy?", "What is the capital of Peru?", 0, 0.50),  # neither hits
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> tuple[Path, FakeEmbed]:
    table: dict[str, NDArray[np.float32]] = {}
    lines = ["question1,question2,is_duplicate"]
    for k, (q1, q2, label, cos) in enumerate(PAIRS):
        table[q1], table[q2] = _pair_vectors(2 * k, cos)
        lines.append(f'"{q1}","{q2}",{label}')
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, FakeEmbed(table)


@pytest.fixture
def retrieval_file(tmp_path: Path) -> tuple[Path, FakeEmbed]:
    o1 = _unit((2, 1.0))
    o2 = _unit((2, 0.9), (3, float(np.sqrt(1 - 0.81))))
    table = {
        "How do I boil an egg?": _unit((0, 1.0)),
        "How can I boil an egg?": _unit((0, 0.97), (1, float(np.sqrt(1 - 0.97**2)))),
        "Convert 100 USD to EUR": o1,
        "How do I convert 100 USD to EUR?": _unit((2, 0.95), (4, float(np.sqrt(1 - 0.95**2)))),
        "Convert 100 EUR to USD": o2,
        # Nearer to the USD->EUR entry (0.977) than to its own (0.972): plain cosine serves
        # the wrong direction, the guard vetoes it and the decision falls back to its own.
        "Please convert 100 EUR to USD": (1.1 * o1 + o2) / np.linalg.norm(1.1 * o1 + o2),
        "What is a black hole?": _unit((5, 1.0)),
        "Tell me about black holes": _unit((5, 0.85), (6, float(np.sqrt(1 - 0.85**2)))),
    }
    data = [
        {"origin": "How do I boil an egg?", "similar": "How can I boil an egg?"},
        {"origin": "Convert 100 USD to EUR", "similar": "How do I convert 100 USD to EUR?"},
        {"origin": "Convert 100 EUR to USD", "similar": "Please convert 100 EUR to USD"},
        {"origin": "What is a black hole?", "similar": "Tell me about black holes"},
    ]
    path = tmp_path / "retrieval.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, FakeEmbed({k: v.astype(np.float32) for k, v in table.items()})


def test_pairwise_counts(pairs_file: tuple[Path, FakeEmbed]) -> None:
    path, embed = pairs_file
    report = run_pairwise(path, embed, 0.92)
    assert report.protocol == "pairwise"
    assert report.size == 5
    plain, shipped = report.plain, report.shipped
    assert (plain.correct, plain.wrong, plain.miss) == (1, 2, 1)
    assert (plain.positives, plain.negatives) == (2, 3)
    assert plain.precision == pytest.approx(1 / 3)
    assert plain.recall == pytest.approx(0.5)
    assert plain.false_hit_rate == pytest.approx(2 / 3)
    assert (shipped.correct, shipped.wrong, shipped.miss) == (1, 0, 1)
    assert shipped.precision == 1.0
    assert shipped.false_hit_rate == 0.0


def test_pairwise_threshold_and_limit(pairs_file: tuple[Path, FakeEmbed]) -> None:
    path, embed = pairs_file
    low = run_pairwise(path, embed, 0.85)
    assert (low.plain.correct, low.plain.wrong) == (2, 2)
    assert (low.shipped.correct, low.shipped.wrong) == (2, 0)
    first_two = run_pairwise(path, embed, 0.92, limit=2)
    assert first_two.size == 2
    assert (first_two.plain.correct, first_two.plain.wrong) == (1, 1)


def test_retrieval_counts(retrieval_file: tuple[Path, FakeEmbed]) -> None:
    path, embed = retrieval_file
    report = run_retrieval(path, embed, 0.92)
    assert report.protocol == "retrieval"
    plain, shipped = report.plain, report.shipped
    assert (plain.correct, plain.wrong, plain.miss) == (2, 1, 1)
    assert (shipped.correct, shipped.wrong, shipped.miss) == (3, 0, 1)
    assert plain.recall == pytest.approx(0.5)
    assert shipped.precision == 1.0
    assert plain.false_hit_rate == pytest.approx(0.25)


def test_curves_are_monotone_in_recall(pairs_file: tuple[Path, FakeEmbed]) -> None:
    path, embed = pairs_file
    report = run_pairwise(path, embed, 0.92)
    for curve in (report.plain_curve, report.shipped_curve):
        recalls = [r for _, _, r in curve]
        assert recalls == sorted(recalls, reverse=True)  # the sweep raises the threshold


def test_plot_is_a_png(
    tmp_path: Path, pairs_file: tuple[Path, FakeEmbed], retrieval_file: tuple[Path, FakeEmbed]
) -> None:
    reports: list[EvalReport] = [
        run_pairwise(pairs_file[0], pairs_file[1], 0.92),
        run_retrieval(retrieval_file[0], retrieval_file[1], 0.92),
    ]
    out = plot_pr(reports, tmp_path / "pr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_format_report_side_by_side(pairs_file: tuple[Path, FakeEmbed]) -> None:
    text = format_report(run_pairwise(pairs_file[0], pairs_file[1], 0.92))
    assert "pairwise pairs.csv (5 pairs, 2 positive), threshold 0.92" in text
    plain = next(line for line in text.splitlines() if "plain cosine" in line).split()
    shipped = next(line for line in text.splitlines() if "shipped decision" in line).split()
    assert plain[-3:] == ["1", "2", "1"]
    assert shipped[-3:] == ["1", "0", "1"]


def test_eval_main(
    tmp_path: Path,
    pairs_file: tuple[Path, FakeEmbed],
    retrieval_file: tuple[Path, FakeEmbed],
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = {**pairs_file[1].table, **retrieval_file[1].table}
    plot = tmp_path / "out.png"
    argv = ["--pairs", str(pairs_file[0]), "--retrieval", str(retrieval_file[0]),
            "--threshold", "0.92", "--plot", str(plot)]
    assert eval_main(argv, embed=FakeEmbed(table)) == 0
    out = capsys.readouterr().out
    assert "pairwise pairs.csv" in out and "retrieval retrieval.json" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_eval_main_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    embed = FakeEmbed({})
    assert eval_main(["--pairs", str(tmp_path / "missing.csv"), "--plot", ""], embed=embed) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    assert eval_main(["--pairs", str(bad), "--plot", ""], embed=embed) == 1
    assert "malformed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main(["--threshold", "1.5"], embed=embed)


def test_retrieval_follows_the_router_and_reports_same_text(tmp_path: Path) -> None:
    """Shipped hits are what the engine's router serves (its near-tie break included);
    wrong hits on an entry with the pair's own text are counted apart."""
    a = _unit((0, 1.0))
    near = _unit((0, 0.96), (1, float(np.sqrt(1 - 0.96**2))))
    table = {
        # Two entries the embedder barely separates: the lookup is a hair nearer the
        # other one, worded differently, than to its own, worded like it.
        "What is the default password of a router?": a,
        "How do I reset my router password?": _unit((0, 0.995), (2, float(np.sqrt(1 - 0.995**2)))),
        "how do I reset my router password": near,
        # The same text stored twice: the second pair's lookup finds the first entry.
        "What is a black hole?": _unit((5, 1.0)),
        "Tell me what a black hole is": _unit((5, 0.97), (6, float(np.sqrt(1 - 0.97**2)))),
    }
    data = [
        {"origin": "What is the default password of a router?",
         "similar": "What is the default password of a router?"},
        {"origin": "How do I reset my router password?",
         "similar": "how do I reset my router password"},
        {"origin": "What is a black hole?", "similar": "Tell me what a black hole is"},
        {"origin": "What is a black hole?", "similar": "Tell me what a black hole is"},
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    report = run_retrieval(path, FakeEmbed({k: v.astype(np.float32) for k, v in table.items()}))
    sims = float(near @ a), float(near @ table["How do I reset my router password?"])
    assert sims[0] > sims[1] and sims[0] - sims[1] < 0.02  # a near-tie, the wrong one first
    plain, shipped = report.plain, report.shipped
    assert (plain.correct, plain.wrong, plain.same_text) == (2, 2, 1)
    assert (shipped.correct, shipped.wrong, shipped.same_text) == (3, 1, 1)
    text = format_report(report)
    assert "same text as the pair's own: plain 1, shipped 1" in text


def _rewrite(pairs: Path, header: str, sep: str = ",", suffix: str = ".csv") -> Path:
    """The pairs file with another header (and separator), same rows and labels."""
    out = pairs.with_name(f"other{suffix}")
    rows = [f'"{q1}"{sep}"{q2}"{sep}{label}' for q1, q2, label, _ in PAIRS]
    out.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize(
    "header",
    ["sentence1,sentence2,label", "text1,text2,label", "query1,query2,duplicate", "Text_A,Text_B,Label"],
)
def test_eval_reads_the_common_pair_layouts(
    pairs_file: tuple[Path, FakeEmbed], header: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _rewrite(pairs_file[0], header)
    assert eval_main(["--pairs", str(path), "--plot", ""], embed=pairs_file[1]) == 0
    assert "(5 pairs, 2 positive)" in capsys.readouterr().out


def test_eval_columns_option_and_tsv(
    pairs_file: tuple[Path, FakeEmbed], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _rewrite(pairs_file[0], "left\tright\tsame", sep="\t", suffix=".tsv")
    argv = ["--pairs", str(path), "--plot", "", "--columns", "left,right,same"]
    assert eval_main(argv, embed=pairs_file[1]) == 0
    assert "(5 pairs, 2 positive)" in capsys.readouterr().out
    assert eval_main([*argv[:-1], "left,right,nope"], embed=pairs_file[1]) == 1
    assert "no column nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main([*argv[:-1], "left,right"], embed=pairs_file[1])


def test_eval_names_the_expected_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\nx,y,1\n", encoding="utf-8")
    assert eval_main(["--pairs", str(bad), "--plot", ""], embed=FakeEmbed({})) == 1
    err = capsys.readouterr().err
    assert "columns a, b, c" in err and "question1,question2,is_duplicate" in err
    assert "sentence1,sentence2,label" in err and "--columns" in err
    bad.write_text("sentence1,sentence2,label\nx,y,maybe\n", encoding="utf-8")
    assert eval_main(["--pairs", str(bad), "--plot", ""], embed=FakeEmbed({})) == 1
    assert "line 2" in capsys.readouterr().err


# --------------------------------------------------------------------------- the fixed split


def _made_up_rows(n: int) -> list[tuple[str, str]]:
    return [(f"How far is town {k} from the coast?", f"Distance from town {k} to the sea")
            for k in range(n)]


def test_split_is_a_pure_function_of_the_texts() -> None:
    rows = _made_up_rows(400)
    first = [split_of(a, b) for a, b in rows]
    assert [split_of(a, b) for a, b in reversed(rows)] == first[::-1]  # order does not matter
    assert set(first) == {"tuning", "held-back"}
    held = first.count("held-back")
    assert 150 < held < 250  # about half each
    # The side belongs to the pair, not to one text: swapping the texts is another row.
    assert any(split_of(a, b) != split_of(b, a) for a, b in rows)


def test_in_split() -> None:
    for a, b in _made_up_rows(20):
        side = split_of(a, b)
        other: Split = "tuning" if side == "held-back" else "held-back"
        assert in_split(a, b, "all")
        assert in_split(a, b, side)
        assert not in_split(a, b, other)


def test_pairwise_parts_partition_the_rows(pairs_file: tuple[Path, FakeEmbed]) -> None:
    path, embed = pairs_file
    whole = run_pairwise(path, embed, 0.92)
    tuning = run_pairwise(path, embed, 0.92, split="tuning")
    held = run_pairwise(path, embed, 0.92, split="held-back")
    expected_held = sum(split_of(a, b) == "held-back" for a, b, _, _ in PAIRS)
    assert 0 < expected_held < len(PAIRS)
    assert held.size == expected_held
    assert tuning.size + held.size == whole.size
    for name in ("plain", "shipped"):
        w, t, h = (getattr(r, name) for r in (whole, tuning, held))
        assert (t.correct + h.correct, t.wrong + h.wrong, t.miss + h.miss) == (
            w.correct, w.wrong, w.miss)
    assert "[held-back part]" in held.name


def test_retrieval_parts_keep_every_entry_in_the_cache(
    retrieval_file: tuple[Path, FakeEmbed],
) -> None:
    path, embed = retrieval_file
    whole = run_retrieval(path, embed, 0.92)
    tuning = run_retrieval(path, embed, 0.92, split="tuning")
    held = run_retrieval(path, embed, 0.92, split="held-back")
    assert tuning.size + held.size == whole.size == 4
    assert 0 < held.size < 4
    for name in ("plain", "shipped"):
        w, t, h = (getattr(r, name) for r in (whole, tuning, held))
        # Only the lookups are divided: each is decided against the same full cache.
        assert (t.correct + h.correct, t.wrong + h.wrong, t.miss + h.miss) == (
            w.correct, w.wrong, w.miss)


def test_eval_main_split_option(
    pairs_file: tuple[Path, FakeEmbed],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, embed = pairs_file
    assert eval_main(["--pairs", str(path), "--plot", "", "--split", "held-back"],
                     embed=embed) == 0
    assert "pairs.csv [held-back part]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        eval_main(["--pairs", str(path), "--split", "half"], embed=embed)
    assert exc.value.code == 2


def test_the_command_embeds_with_the_configured_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # `cacheback eval` measures the model the cache would run: CACHEBACK_EMBED_COMPUTE applies.
    from cacheback.adapters.eval import _hit_eval

    for setting in ("int8", "float32"):
        monkeypatch.setenv("CACHEBACK_EMBED_COMPUTE", setting)
        embedder = _hit_eval._default_embedder()
        vectors = embedder.embed(["How do I reverse a list in Python?"])
        assert vectors.shape == (1, 384)
        assert embedder.describe()["compute"] == setting
