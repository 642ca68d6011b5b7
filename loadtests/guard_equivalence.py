"""Do two checkouts' hit guards say the same thing? A check for speed-only changes.

    python loadtests/guard_equivalence.py --base ../cacheback-before [--texts 30000] [--seed 0]

Builds texts of its own (the near-miss suite, the benchmark questions, the string literals
of the guard's tests, and random edits of them: words swapped, dropped or replaced by
words of the guard's own word lists, numbers, dates, units, currencies, code, negation,
capitals, punctuation), pairs of them (each text with an edit of itself, and random
pairs), then runs each checkout's guard over them in its own process and compares, for
every text, its analysis (every field of ``_Features`` the base has) and, for every pair,
``guard_reasons``, ``pair_features``, ``word_overlap``, ``verbatim_decision`` and the
engine's rule at similarities on both sides of the threshold, with caches cold and warm.

Prints the number of differences (a figure, for ``ab.py``-style reading) and the first
few; asserts nothing. Reads no evaluation data.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMILARITIES = (0.79, 0.85, 0.9199, 0.92, 0.93, 0.97, 1.0)


def _seed_texts() -> list[str]:
    texts: list[str] = []
    suite = ROOT / "tests" / "data" / "near_miss.jsonl"
    for line in suite.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts += [row["query"], row["candidate"]]
    for test in sorted((ROOT / "tests").glob("test_guard*.py")):
        for node in ast.walk(ast.parse(test.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if 3 <= len(node.value) <= 300 and " " in node.value:
                    texts.append(node.value)
    sys.path.insert(0, str(ROOT / "loadtests"))
    from bench_cpu_share import lookups, questions

    texts += questions(1000)[::3] + lookups(1000)[:300]
    return list(dict.fromkeys(texts))


def _lexicon() -> list[str]:
    words: list[str] = []
    for path in sorted((ROOT / "cacheback" / "guard" / "data").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                words += [w for w in line.replace("\t", " ").replace("=", " ").split() if w]
    return sorted(set(words))


_EXTRA = [
    "3.11", "3.12", "2024", "1999", "5", "10", "25th", "2nd", "$", "€", "£", "5kg", "10km",
    "7am", "7:30", "12pm", "30%", "20°C", "1,000", "5k", "v2", "python3", "gpt-4", "4-year",
    "read_csv", "pandas.read_csv", "getUserName", "`foo()`", "node.js", "C++", "C#", "->", "==",
    "not", "never", "without", "no", "don't", "isn't", "can't", "from", "to", "into", "than",
    "more", "less", "and", "or", ",", "/", "&", "vs", "Paris", "London", "NLP", "ML", "IN",
    "US", "Natural Language Processing", "e.g.", "U.S.", "state-of-the-art", "tomorrow",
    "today", "next week", "last month", "in euros", "to USD", "how many km", "by the",
    "used by the design community", "among game developers", "as a table", "in JSON",
    "briefly", "in detail", "best", "worst", "why", "when", "where", "who", "In what year",
]


def _edit(text: str, rng: random.Random, lexicon: list[str]) -> str:
    words = text.split()
    if not words:
        return rng.choice(_EXTRA)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        i = rng.randrange(len(words)) if words else 0
        pool = _EXTRA if rng.random() < 0.5 else lexicon
        if op == 0 and len(words) > 1:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        elif op == 1 and len(words) > 2:
            del words[i]
        elif op in (2, 3):
            words[i] = rng.choice(pool)
        elif op == 4:
            words.insert(i, rng.choice(pool))
        elif op == 5:
            words[i] = words[i].capitalize() if words[i][:1].islower() else words[i].lower()
        elif op == 6:
            words = [w.title() for w in words] if rng.random() < 0.7 else [w.upper() for w in words]
        elif op == 7:
            words[i] = words[i] + rng.choice([",", "?", ".", "!", ":", "'s", "s", "ing", "ed"])
        else:
            k = rng.randrange(len(words) + 1)
            words = words[k:] + words[:k]
    return " ".join(words)


def corpus(n_texts: int, seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    seeds, lexicon = _seed_texts(), _lexicon()
    texts = list(seeds)
    while len(texts) < n_texts:
        texts.append(_edit(rng.choice(texts if rng.random() < 0.3 else seeds), rng, lexicon))
    texts = list(dict.fromkeys(texts))
    pairs: list[tuple[str, str]] = []
    for t in texts:
        pairs.append((t, _edit(t, rng, lexicon)))
        if rng.random() < 0.3:
            pairs.append((t, rng.choice(texts)))
    return texts, pairs


def _plain(value: object) -> object:
    if isinstance(value, (frozenset, set)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # by_prefix: its words in set order, which means nothing
        return {k: sorted(_plain(v), key=repr) for k, v in sorted(value.items())}  # type: ignore[arg-type]
    return value


def judge(corpus_file: str, fields_file: str | None, out: str) -> None:
    """Run in each checkout's process: write every answer of this checkout's guard."""
    from cacheback.guard import (
        clear_caches,
        guard_reasons,
        pair_features,
        shipped_model,
        verbatim_decision,
        verbatim_rule,
        word_overlap,
    )
    from cacheback.guard._extract import _entry_features, _features

    data = json.loads(Path(corpus_file).read_text(encoding="utf-8"))
    texts, pairs = data["texts"], [tuple(p) for p in data["pairs"]]
    if fields_file is None:
        from cacheback.guard._features import _Features

        names = [f.name for f in dataclasses.fields(_Features)]
    else:
        names = json.loads(Path(fields_file).read_text(encoding="utf-8"))
    answers: list[object] = [names]
    for side in (_features, _entry_features):
        clear_caches()
        for t in texts:
            f = side(t)
            answers.append([_plain(getattr(f, n)) for n in names])
    rule = verbatim_rule()
    model = shipped_model()
    for warm in (False, True):
        if not warm:
            clear_caches()
        for q, c in pairs:
            row: list[object] = [list(guard_reasons(q, c)), list(pair_features(q, c, 0.93)),
                                 word_overlap(q, c)]
            for s in SIMILARITIES:
                d = verbatim_decision(q, c, s, model=model)
                row += [d.hit, d.score, list(d.reasons), _plain(rule(q, c, s, 0.92))]
            answers.append(row)
    Path(out).write_text(json.dumps(answers), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="the checkout to compare against")
    ap.add_argument("--new", type=Path, default=ROOT)
    ap.add_argument("--texts", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.judge:
        corpus_file, fields, out = args.judge
        judge(corpus_file, None if fields == "-" else fields, out)
        return
    if args.base is None:
        ap.error("--base is required")
    texts, pairs = corpus(args.texts, args.seed)
    with tempfile.TemporaryDirectory() as d:
        cfile = Path(d) / "corpus.json"
        cfile.write_text(json.dumps({"texts": texts, "pairs": pairs}), encoding="utf-8")
        outs: list[list[object]] = []
        fields = "-"
        for tree in (args.base, args.new):
            out = Path(d) / f"{len(outs)}.json"
            env = dict(os.environ, PYTHONPATH=str(tree))
            subprocess.run([sys.executable, __file__, "--judge", str(cfile), fields, str(out)],
                           env=env, cwd=tree, check=True)
            outs.append(json.loads(out.read_text(encoding="utf-8")))
            fields = str(Path(d) / "fields.json")
            Path(fields).write_text(json.dumps(outs[0][0]), encoding="utf-8")
    base, new = outs
    n_text = 2 * len(texts)
    diffs = [(i, b, n) for i, (b, n) in enumerate(zip(base, new, strict=True)) if b != n]
    print(f"texts {len(texts)}")
    print(f"pairs {len(pairs)}")
    print(f"rule_calls {2 * len(pairs) * len(SIMILARITIES)}")
    print(f"text_differences {sum(1 for i, _, _ in diffs if 0 < i <= n_text)}")
    print(f"pair_differences {sum(1 for i, _, _ in diffs if i > n_text)}")
    for i, b, n in diffs[:5]:
        what = texts[(i - 1) % len(texts)] if i <= n_text else pairs[(i - 1 - n_text) % len(pairs)]
        print(f"differs: {what!r}\n  base {b}\n  new  {n}")


if __name__ == "__main__":
    main()
