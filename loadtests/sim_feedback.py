"""Replay the development sets with wrong-hit reports and see what per-entry thresholds do.

    python loadtests/sim_feedback.py [--passes 3] [--p 0,0.25,0.5,1] [--confirm 0]
                                     [--split all] [--vectors vectors.npz]

The lookups of each set are replayed ``--passes`` times (each pass in its own shuffled
order) through the engine's own decision: ``route`` with the shipped guarded rule, and the
per-entry thresholds of ``cacheback/core/_feedback.py`` (settings' defaults). Whenever a
wrong hit is served, it is reported with probability p (the entry's threshold rises above
that hit's similarity); whenever a correct hit is served, it is confirmed with probability
q (the threshold relaxes a step). Random draws are shared across p and q, so the rows
differ only by the feedback. Printed per set: wrong and correct hits served in the first
pass and in the later ones (a later pass asks every question again: the same questions,
and each other's neighbours), and the correct hits kept against no feedback (p = 0).

* retrieval (``gptcache_mock_data.json``): one cache holds every origin; each ``similar``
  is looked up among its five nearest (as ``cacheback eval`` does); serving another
  pair's origin is wrong.
* pairwise (``meancache_val.csv``): one cache per distinct first text, holding it; each
  row's second text is looked up in its first text's cache and its label says whether
  the hit is right. Rows that share a first text share its entry, and so its threshold.

Every number is measured by running this; nothing is fitted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cacheback.adapters.eval._hit_eval import (
    DEFAULT_PAIRS,
    DEFAULT_RETRIEVAL,
    MATCH_TEXT,
    TOP_K,
    load_pairs,
    load_retrieval,
)
from cacheback.adapters.eval._split import SPLITS, Split, in_split
from cacheback.core._feedback import FeedbackPolicy, Verdict, after_feedback
from cacheback.core._routing import route
from cacheback.core._settings import Settings
from cacheback.core._types import CacheEntry, Candidate, Tier
from cacheback.guard import verbatim_decision, word_overlap


@dataclass(frozen=True, slots=True)
class Lookup:
    """One question asked: its text, its candidates (entry id, similarity) best first, and
    for each candidate whether serving it is right."""

    text: str
    candidates: tuple[tuple[int, float], ...]
    right: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Tally:
    wrong_first: int
    wrong_later: int
    correct_first: int
    correct_later: int
    reports: int
    confirms: int
    raised: int  # entries whose own threshold is above the global one at the end

    @property
    def correct(self) -> int:
        return self.correct_first + self.correct_later

    @property
    def wrong(self) -> int:
        return self.wrong_first + self.wrong_later


class _Rule:
    """The shipped guarded rule, memoised per pair (the replay asks the same pairs again)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str, float, float], tuple[bool, tuple[str, ...]]] = {}

    def __call__(self, query: str, cand: str, sim: float, threshold: float) -> tuple[bool, tuple[str, ...]]:
        key = (query, cand, sim, threshold)
        got = self._memo.get(key)
        if got is None:
            d = verbatim_decision(query, cand, sim, threshold)
            got = self._memo[key] = (d.hit, d.reasons)
        return got

    word_overlap = staticmethod(word_overlap)


def _entry(entry_id: int, text: str, threshold: float | None) -> CacheEntry:
    return CacheEntry(entry_id, "s", text, "", None, 0.0, np.inf, 0.0, hit_threshold=threshold)


def replay(
    lookups: Sequence[Lookup],
    texts: Sequence[str],
    *,
    p: float,
    q: float,
    passes: int,
    seed: int,
    threshold: float,
    policy: FeedbackPolicy,
    rule: _Rule,
) -> Tally:
    """Ask every lookup ``passes`` times with feedback; ``texts[i]`` is entry i's question."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(lookups)) for _ in range(passes)]
    draws = rng.random((passes, len(lookups)))  # the same draws for every p and q
    own: dict[int, float | None] = {}
    wrong = [0, 0]
    correct = [0, 0]
    reports = confirms = 0
    for k, order in enumerate(orders):
        later = 1 if k else 0
        for i in order.tolist():
            lk = lookups[i]
            cands = [Candidate(_entry(j, texts[j], own.get(j)), sim) for j, sim in lk.candidates]
            d = route(lk.text, cands, similarity_threshold=threshold, synthesis_threshold=threshold,
                      synthesis_mode="off", verbatim_rule=rule)  # fmt: skip
            if d.tier is not Tier.VERBATIM or d.best is None:
                continue
            served = d.best.entry.id
            is_right = lk.right[[j for j, _ in lk.candidates].index(served)]
            u = float(draws[k, i])
            if is_right:
                correct[later] += 1
                verdict = Verdict.CORRECT if u < q else None
            else:
                wrong[later] += 1
                verdict = Verdict.WRONG if u < p else None
            if verdict is None:
                continue
            reports += verdict is Verdict.WRONG
            confirms += verdict is Verdict.CORRECT
            own[served] = after_feedback(own.get(served), verdict, global_threshold=threshold,
                                         similarity=d.best.similarity, policy=policy)  # fmt: skip
    raised = sum(1 for t in own.values() if t is not None)
    return Tally(wrong[0], wrong[1], correct[0], correct[1], reports, confirms, raised)


def _embed(texts: Sequence[str], cache: Path | None) -> dict[str, NDArray[np.float32]]:
    """One vector per distinct match text (kept in ``cache``, an .npz file, when given)."""
    unique = sorted({MATCH_TEXT(t) for t in texts})
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
        if all(t in known for t in unique):
            return known
    from cacheback.adapters.embedders import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    out: dict[str, NDArray[np.float32]] = {}
    for start in range(0, len(unique), 512):
        chunk = unique[start : start + 512]
        out.update(zip(chunk, np.asarray(embedder.embed(chunk), dtype=np.float32), strict=True))
        print(f"\rembedding {len(out)}/{len(unique)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if cache is not None:
        np.savez(cache, texts=np.array(unique), vectors=np.stack([out[t] for t in unique]))
    return out


def retrieval_lookups(path: Path, split: Split, vectors: dict[str, NDArray[np.float32]]) -> tuple[
    list[Lookup], list[str]
]:
    pairs = load_retrieval(path)
    origins = [o for o, _ in pairs]
    keys = np.stack([vectors[MATCH_TEXT(o)] for o in origins])
    lookups = []
    for i, (o, s) in enumerate(pairs):
        if not in_split(o, s, split):
            continue
        sims = keys @ vectors[MATCH_TEXT(s)]
        top = np.argsort(-sims, kind="stable")[:TOP_K].tolist()
        lookups.append(Lookup(s, tuple((j, float(sims[j])) for j in top), tuple(j == i for j in top)))
    return lookups, origins


def pairwise_lookups(path: Path, split: Split, vectors: dict[str, NDArray[np.float32]]) -> tuple[
    list[Lookup], list[str]
]:
    rows = [r for r in load_pairs(path) if in_split(r[0], r[1], split)]
    entry_of: dict[str, int] = {}
    lookups = []
    for q1, q2, label in rows:
        j = entry_of.setdefault(q1, len(entry_of))
        sim = float(vectors[MATCH_TEXT(q1)] @ vectors[MATCH_TEXT(q2)])
        lookups.append(Lookup(q2, ((j, sim),), (label == 1,)))
    return lookups, list(entry_of)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    ap.add_argument("--retrieval", type=Path, default=DEFAULT_RETRIEVAL)
    ap.add_argument("--split", choices=SPLITS, default="all")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--p", type=_floats, default=[0.0, 0.25, 0.5, 1.0], help="report rates of wrong hits")
    ap.add_argument("--confirm", type=_floats, default=[0.0], help="confirm rates of correct hits")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--vectors", type=Path, default=None, help="an .npz file to keep the embeddings in")
    args = ap.parse_args(argv)
    s = Settings()
    policy = FeedbackPolicy(s.feedback_margin, s.feedback_relax_step)
    threshold = s.similarity_threshold
    pairs_rows = load_pairs(args.pairs)
    retrieval_rows = load_retrieval(args.retrieval)
    vectors = _embed([t for r in pairs_rows for t in r[:2]] + [t for r in retrieval_rows for t in r],
                     args.vectors)  # fmt: skip
    rule = _Rule()
    print(f"threshold {threshold}, feedback_margin {policy.margin}, feedback_relax_step {policy.relax_step},"
          f" {args.passes} passes, seed {args.seed}, split {args.split}")  # fmt: skip
    for name, build, path in (("retrieval", retrieval_lookups, args.retrieval),
                              ("pairwise", pairwise_lookups, args.pairs)):  # fmt: skip
        lookups, texts = build(path, args.split, vectors)
        print(f"\n{name} {path.name}: {len(lookups)} lookups over {len(texts)} entries")
        print("  report p  confirm q   wrong: pass 1  later  total   correct: pass 1  later  total"
              "   correct kept  reports  raised")
        for q in args.confirm:
            base: Tally | None = None
            for p in args.p:
                t = replay(lookups, texts, p=p, q=q, passes=args.passes, seed=args.seed,
                           threshold=threshold, policy=policy, rule=rule)  # fmt: skip
                base = base if base is not None else t
                kept = t.correct / base.correct if base.correct else 1.0
                print(f"  {p:8.2f}  {q:9.2f}   {t.wrong_first:13d}  {t.wrong_later:5d}  {t.wrong:5d}"
                      f"   {t.correct_first:15d}  {t.correct_later:5d}  {t.correct:5d}"
                      f"   {kept:12.4f}  {t.reports:7d}  {t.raised:6d}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
