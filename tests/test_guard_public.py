"""``cacheback.guard`` is a public package of its own: its names, its callable rule, its
word lists shipped as data files, and no imports from the rest of cacheback."""

from __future__ import annotations

import ast
import importlib
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

import cacheback.guard as guard
from cacheback.guard import _wordlists

GUARD_DIR = Path(guard.__file__).parent
ROOT = GUARD_DIR.parent.parent


def test_public_names_exist() -> None:
    expected = {"Decision", "VerbatimRule", "verbatim_decision", "verbatim_rule", "guard_reasons",
                "filter_synthesis_candidates", "word_overlap", "GuardModel", "shipped_model",
                "pair_features", "FEATURE_NAMES", "clear_caches"}
    assert expected <= set(guard.__all__)
    for name in guard.__all__:
        assert getattr(guard, name) is not None, name
    assert importlib.import_module("cacheback.guard") is guard


def test_verbatim_rule_is_the_engine_callable() -> None:
    rule = guard.verbatim_rule()
    assert rule("Convert 100 USD to EUR", "Convert 100 EUR to USD", 0.99, 0.92) == (
        False, ("direction",))
    hit, reasons = rule("How do I boil an egg?", "How can I boil an egg?", 0.95, 0.92)
    assert hit and reasons == ()
    assert rule("How do I boil an egg?", "How can I boil an egg?", 0.90, 0.92) == (False, ())
    plain = guard.verbatim_rule(guard=False)
    assert plain("Convert 100 USD to EUR", "Convert 100 EUR to USD", 0.99, 0.92) == (True, ())
    # A custom scorer is used as given: with no risk weight the score is the cosine, while
    # the shipped one trusts a name on one side less.
    q = "Where can I buy a Kindle reader?"
    c = "Which shops have the Amazon Kindle reader in stock for delivery to Toronto?"
    flat = guard.verbatim_rule(model=guard.GuardModel(weights=(10.0, 0.0)))
    assert flat(q, c, 0.93, 0.93) == (True, ())
    assert rule(q, c, 0.93, 0.93) == (False, ())


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
    return out


def test_guard_imports_nothing_else_from_cacheback() -> None:
    for path in GUARD_DIR.glob("*.py"):
        for name in _imports(path):
            assert not name.startswith("cacheback"), (path.name, name)
            assert not name.startswith(".."), (path.name, name)


def test_word_lists_are_shipped_package_data() -> None:
    files = sorted(p.name for p in (GUARD_DIR / "data").glob("*"))
    assert files and all(f.endswith(".txt") for f in files)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["cacheback"]
    for f in files:
        assert any(fnmatch(f"guard/data/{f}", g) for g in globs), f
    # Every list in data/ is read by some lexicon module.
    used = "".join((GUARD_DIR / m).read_text(encoding="utf-8")
                   for m in ("_lexicon_words.py", "_lexicon_names.py", "_lexicon_quantities.py",
                             "_templates.py"))
    for f in files:
        assert f'"{f.removesuffix(".txt")}"' in used, f


def test_word_list_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "demo.txt").write_text(
        "# a comment line\n\nc#\n  spaced  \nword # a trailing comment\n", encoding="utf-8")
    (data / "demomap.txt").write_text("# header\nunited states = usa\nkm/h = kmh\n",
                                      encoding="utf-8")
    (data / "bad.txt").write_text("no separator here\n", encoding="utf-8")

    monkeypatch.setattr(_wordlists, "_data", lambda: data)
    assert _wordlists.entries("demo") == ["c#", "spaced", "word"]
    assert _wordlists.mapping("demomap") == {"united states": "usa", "km/h": "kmh"}
    with pytest.raises(ValueError, match=r"bad\.txt"):
        _wordlists.pairs("bad")


def test_shipped_lists_read_as_words() -> None:
    from cacheback.guard._lexicon_quantities import _CURRENCIES, _MAGNITUDES
    from cacheback.guard._lexicon_words import _OPPOSITE_OF, _STOPWORDS

    assert {"the", "of", "what"} <= _STOPWORDS
    assert "worst" in _OPPOSITE_OF["best"] and "best" in _OPPOSITE_OF["worst"]
    assert _CURRENCIES["euros"] == "eur"
    assert _MAGNITUDES["million"] == 1e6


def test_router_breaks_ties_on_the_rules_own_word_overlap() -> None:
    from cacheback.core._routing import route
    from cacheback.core._types import CacheEntry, Candidate

    def cand(sim: float, text: str, entry_id: int) -> Candidate:
        return Candidate(CacheEntry(entry_id, "s", text, "answer", None, 0.0, 1e12, 0.0), sim)

    class Rule:
        def __call__(self, q: str, c: str, s: float, t: float) -> tuple[bool, tuple[str, ...]]:
            return s >= t, ()

        @staticmethod
        def word_overlap(q: str, c: str) -> float:
            return 1.0 if c == "second" else 0.0

    cands = [cand(0.955, "first", 1), cand(0.950, "second", 2)]
    d = route("q", cands, similarity_threshold=0.92, synthesis_threshold=0.9,
              synthesis_mode="off", verbatim_rule=Rule())
    assert d.best is not None and d.best.entry_id == 2
    # The guard's rule brings the guard's overlap (contractions expanded: "what's" is "what is").
    assert guard.verbatim_rule().word_overlap("What's a CPU?", "what is a cpu") == 1.0  # type: ignore[attr-defined]
