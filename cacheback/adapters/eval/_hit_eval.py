"""Hit-quality evaluation: plain cosine against the shipped decision, on labelled data.

Two protocols (see ``shared/eval/README.md`` in the project's shared data):

* **pairwise** — a CSV with two texts and a 0/1 label per row (``question1,question2,
  is_duplicate``, ``sentence1,sentence2,label``, ... or ``--columns``; ``_pair_columns.py``):
  for each row an empty cache holds the first text and the second is looked up. A hit on a row labelled 1 is
  correct, on a row labelled 0 it is a wrong answer served.
* **retrieval** — a JSON list of ``{"origin", "similar"}``: one cache holds every
  origin, every ``similar`` is looked up. Returning its own pair's entry is correct,
  any other entry is wrong, no hit is a miss. Plain cosine serves the nearest entry;
  the shipped decision serves what the engine's router picks among the five nearest
  (``cacheback.core._routing.route`` with the guarded rule). Wrong hits on an entry
  whose text is identical to the pair's own (a data set may hold a text twice) are
  counted too and printed apart: no rule can tell those entries apart.

Both are computed from one embedding per distinct text, so a threshold sweep (the
precision-recall curve) costs nothing extra.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
from numpy.typing import NDArray

from cacheback.core._routing import VerbatimRule, route
from cacheback.core._types import CacheEntry, Candidate, Tier, match_text
from cacheback.guard import Decision, GuardModel, verbatim_decision, word_overlap

from ._pair_columns import ColumnError, pair_columns, parse_columns, parse_label
from ._split import SPLITS, Split, in_split

if TYPE_CHECKING:
    from cacheback.adapters.embedders import MiniLMEmbedder

__all__ = [
    "Counts",
    "EmbedFn",
    "EvalReport",
    "embed_texts",
    "eval_main",
    "format_report",
    "load_pairs",
    "load_retrieval",
    "plot_pr",
    "run_pairwise",
    "run_retrieval",
]

#: Texts in, one L2-normalised float32 row per text out.
EmbedFn = Callable[[Sequence[str]], NDArray[np.float32]]

DEFAULT_PAIRS = Path("..") / "shared" / "eval" / "meancache_val.csv"
DEFAULT_RETRIEVAL = Path("..") / "shared" / "eval" / "gptcache_mock_data.json"
DEFAULT_PLOT = Path("cacheback-eval-pr.png")
TOP_K = 5
#: The text that is embedded for a query or an entry, as the engine embeds it.
MATCH_TEXT: Callable[[str], str] = match_text
_EMBED_CHUNK = 512
_SEARCH_CHUNK = 1024
# Thresholds of the precision-recall curves.
SWEEP: tuple[float, ...] = tuple(round(0.70 + 0.005 * k, 3) for k in range(61))


@dataclass(frozen=True, slots=True)
class Counts:
    """Outcomes of one rule at one threshold."""

    correct: int  # served, and right
    wrong: int  # served, and someone else's answer
    miss: int  # a positive (pairwise) or a lookup (retrieval) served nothing
    positives: int  # rows that should hit
    negatives: int  # rows that must not hit (0 for retrieval: every lookup has a pair)
    same_text: int = 0  # retrieval: wrong hits on an entry with the pair's own text

    @property
    def hits(self) -> int:
        return self.correct + self.wrong

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 0.0

    @property
    def false_hit_rate(self) -> float:
        """Wrong hits over the rows that must not hit (pairwise) or over all lookups."""
        base = self.negatives if self.negatives else self.positives
        return self.wrong / base if base else 0.0


@dataclass(frozen=True, slots=True)
class EvalReport:
    """One data set under one protocol: both rules at the threshold, and their curves."""

    protocol: str  # "pairwise" or "retrieval"
    name: str
    threshold: float
    size: int
    plain: Counts
    shipped: Counts
    # (threshold, precision, recall) along SWEEP, for the plot.
    plain_curve: tuple[tuple[float, float, float], ...] = field(default=())
    shipped_curve: tuple[tuple[float, float, float], ...] = field(default=())
    # What the guard cost and saved: plain cosine's hits at the threshold that the shipped
    # decision removed, per rule: (rule, correct hits removed, wrong hits removed).
    removed: tuple[tuple[str, int, int], ...] = field(default=())


#: The ``removed`` row of hits the guard did not veto but the learned scorer put below
#: the threshold.
SCORER_ROW = "scorer"


class _Removed:
    """Tallies plain-cosine hits the decision removed, per guard rule (a pair vetoed by
    several rules counts under each) or under :data:`SCORER_ROW`."""

    def __init__(self) -> None:
        self.by_rule: dict[str, list[int]] = {}

    def add(self, reasons: Sequence[str], correct: bool) -> None:
        rules = dict.fromkeys(r.split(":", 1)[0] for r in reasons) or {SCORER_ROW: None}
        for rule in rules:
            self.by_rule.setdefault(rule, [0, 0])[0 if correct else 1] += 1

    def rows(self) -> tuple[tuple[str, int, int], ...]:
        return tuple(sorted(((k, c, w) for k, (c, w) in self.by_rule.items()),
                            key=lambda row: (-(row[1] + row[2]), row[0])))


# --------------------------------------------------------------------------- loading


def load_pairs(
    path: Path | str, limit: int | None = None, columns: tuple[str, str, str] | None = None
) -> list[tuple[str, str, int]]:
    """``(first, second, label)`` rows of a pairwise CSV (a ``.tsv`` file: tab-separated).
    The columns are found from the header (``_pair_columns.LAYOUTS``) unless given."""
    rows: list[tuple[str, str, int]] = []
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    with Path(path).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        first, second, label = pair_columns(reader.fieldnames or [], columns)
        for rec in reader:
            a, b = rec.get(first), rec.get(second)
            if a is None or b is None:
                raise ColumnError(f"line {reader.line_num}: fewer fields than the header names")
            try:
                rows.append((a, b, parse_label(rec.get(label))))
            except ColumnError as exc:
                raise ColumnError(f"line {reader.line_num}: {exc}") from None
            if limit is not None and len(rows) >= limit:
                break
    return rows


def load_retrieval(path: Path | str, limit: int | None = None) -> list[tuple[str, str]]:
    """``(origin, similar)`` pairs of a retrieval JSON file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = [(str(d["origin"]), str(d["similar"])) for d in data]
    return pairs[:limit] if limit is not None else pairs


def embed_texts(
    texts: Sequence[str], embed: EmbedFn, progress: TextIO | None = None
) -> dict[str, NDArray[np.float32]]:
    """One vector per distinct text, embedded in chunks."""
    unique = list(dict.fromkeys(texts))
    out: dict[str, NDArray[np.float32]] = {}
    for start in range(0, len(unique), _EMBED_CHUNK):
        chunk = unique[start : start + _EMBED_CHUNK]
        vectors = np.asarray(embed(chunk), dtype=np.float32)
        out.update(zip(chunk, vectors, strict=True))
        if progress is not None:
            progress.write(f"\rembedding {len(out)}/{len(unique)}")
            progress.flush()
    if progress is not None and unique:
        progress.write("\n")
    return out


# --------------------------------------------------------------------------- protocols


def _pairwise_counts(
    scores: NDArray[np.float64], labels: NDArray[np.int_], threshold: float
) -> Counts:
    hit = scores >= threshold
    pos = labels == 1
    correct = int(np.sum(hit & pos))
    return Counts(
        correct=correct,
        wrong=int(np.sum(hit & ~pos)),
        miss=int(np.sum(pos)) - correct,
        positives=int(np.sum(pos)),
        negatives=int(np.sum(~pos)),
    )


def _curve(count: Callable[[float], Counts]) -> tuple[tuple[float, float, float], ...]:
    points = []
    for t in SWEEP:
        c = count(t)
        if c.hits:
            points.append((t, c.precision, c.recall))
    return tuple(points)


def run_pairwise(
    path: Path | str,
    embed: EmbedFn,
    threshold: float = 0.92,
    *,
    limit: int | None = None,
    progress: TextIO | None = None,
    columns: tuple[str, str, str] | None = None,
    split: Split = "all",
    match: Callable[[str], str] = MATCH_TEXT,
) -> EvalReport:
    """The pairwise protocol on a labelled CSV (see the module docstring), on the rows of
    ``split`` (``_split.py``)."""
    rows = [r for r in load_pairs(path, limit, columns) if in_split(r[0], r[1], split)]
    vectors = embed_texts([match(t) for q1, q2, _ in rows for t in (q1, q2)], embed, progress)
    labels = np.array([label for _, _, label in rows], dtype=np.int_)
    cosine = np.array(
        [float(vectors[match(q1)] @ vectors[match(q2)]) for q1, q2, _ in rows], dtype=np.float64
    )
    # The decision's score does not depend on the threshold; a veto is "never".
    shipped = np.empty_like(cosine)
    removed = _Removed()
    for k, (q1, q2, label) in enumerate(rows):
        d = verbatim_decision(q2, q1, cosine[k], threshold)
        shipped[k] = -np.inf if d.reasons else d.score
        if cosine[k] >= threshold and not d.hit:
            removed.add(d.reasons, correct=label == 1)
    return EvalReport(
        protocol="pairwise",
        name=_named(path, split),
        threshold=threshold,
        size=len(rows),
        plain=_pairwise_counts(cosine, labels, threshold),
        shipped=_pairwise_counts(shipped, labels, threshold),
        plain_curve=_curve(lambda t: _pairwise_counts(cosine, labels, t)),
        shipped_curve=_curve(lambda t: _pairwise_counts(shipped, labels, t)),
        removed=removed.rows(),
    )


def _named(path: Path | str, split: Split) -> str:
    return Path(path).name if split == "all" else f"{Path(path).name} [{split} part]"


def _top_k(
    queries: NDArray[np.float32], keys: NDArray[np.float32], k: int
) -> tuple[NDArray[np.int_], NDArray[np.float32]]:
    """Indices and similarities of the ``k`` nearest keys per query, nearest first.

    Ties keep insertion order (a stable sort), as a first-come cache would.
    """
    k = min(k, len(keys))
    idx = np.empty((len(queries), k), dtype=np.int_)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _SEARCH_CHUNK):
        block = queries[start : start + _SEARCH_CHUNK] @ keys.T
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        idx[start : start + len(block)] = order
        sims[start : start + len(block)] = np.take_along_axis(block, order, axis=1)
    return idx, sims


def _retrieval_counts(
    scores: NDArray[np.float64],
    own: NDArray[np.bool_],
    threshold: float,
    twin: NDArray[np.bool_] | None = None,
) -> Counts:
    hit = scores >= threshold
    correct = int(np.sum(hit & own))
    wrong = int(np.sum(hit & ~own))
    same = int(np.sum(hit & ~own & twin)) if twin is not None else 0
    return Counts(correct, wrong, len(scores) - correct - wrong, len(scores), 0, same)


class _MemoRule:
    """The engine's guarded rule (``model`` overrides the shipped scorer), remembering each
    pair's decision across thresholds (the score and the reasons do not depend on it)."""

    def __init__(self, model: GuardModel | None = None) -> None:
        self._model = model
        self._memo: dict[tuple[str, str, float], Decision] = {}

    def __call__(
        self, query: str, candidate: str, similarity: float, threshold: float
    ) -> tuple[bool, tuple[str, ...]]:
        key = (query, candidate, similarity)
        d = self._memo.get(key)
        if d is None:
            d = self._memo[key] = verbatim_decision(query, candidate, similarity, threshold,
                                                    model=self._model)
        return not d.reasons and d.score >= threshold, d.reasons

    word_overlap = staticmethod(word_overlap)  # the router's tie-break, as in the engine


def _memo_rule(model: GuardModel | None = None) -> VerbatimRule:
    return _MemoRule(model)


def _routed(
    query: str, candidates: Sequence[Candidate], threshold: float, rule: VerbatimRule
) -> int | None:
    """The entry id the engine's router serves for ``query``, or None."""
    d = route(query, candidates, similarity_threshold=threshold,
              synthesis_threshold=threshold, synthesis_mode="off", verbatim_rule=rule)
    return d.best.entry_id if d.tier is Tier.VERBATIM and d.best is not None else None


def run_retrieval(
    path: Path | str,
    embed: EmbedFn,
    threshold: float = 0.92,
    *,
    limit: int | None = None,
    progress: TextIO | None = None,
    split: Split = "all",
    match: Callable[[str], str] = MATCH_TEXT,
) -> EvalReport:
    """The retrieval protocol on a JSON pair list (see the module docstring). The cache
    holds every origin; only the lookups of ``split`` (``_split.py``) are counted."""
    pairs = load_retrieval(path, limit)
    origins = [o for o, _ in pairs]
    similars = [s for _, s in pairs]
    vectors = embed_texts([match(t) for t in origins + similars], embed, progress)
    keys = (np.stack([vectors[match(t)] for t in origins]) if pairs
            else np.zeros((0, 1), np.float32))
    queries = np.stack([vectors[match(t)] for t in similars]) if pairs else keys
    idx, sims = _top_k(queries, keys, TOP_K)

    lookups = np.arange(len(pairs))
    plain_score = sims[:, 0].astype(np.float64)
    plain_own = idx[:, 0] == lookups
    entries = [CacheEntry(j, "eval", text, "", None, 0.0, np.inf, 0.0)
               for j, text in enumerate(origins)]
    candidates = [
        [Candidate(entries[int(j)], float(sim)) for j, sim in zip(idx[q], sims[q], strict=True)]
        for q in range(len(pairs))
    ]
    rule = _memo_rule()
    # The lookups counted: those of the split (the cache still holds every origin).
    chosen = np.array([q for q, (o, s) in enumerate(pairs) if in_split(o, s, split)],
                      dtype=np.int_)
    lookups = lookups[chosen]
    plain_score, plain_own = plain_score[chosen], plain_own[chosen]

    def served(t: float) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
        """Per lookup: 1.0 and the entry id where the router serves one, else -inf."""
        score = np.full(len(chosen), -np.inf)
        entry = np.full(len(chosen), -1, dtype=np.int_)
        for k, q in enumerate(chosen.tolist()):
            got = _routed(similars[q], candidates[q], t, rule)
            if got is not None:
                score[k], entry[k] = 1.0, got
        return score, entry

    def twin(entry: NDArray[np.int_]) -> NDArray[np.bool_]:
        return np.array([e >= 0 and e != q and origins[e] == origins[q]
                         for q, e in zip(lookups.tolist(), entry.tolist(), strict=True)],
                        dtype=np.bool_)

    def shipped_at(t: float) -> Counts:
        score, entry = served(t)
        return _retrieval_counts(score, entry == lookups, 0.0, twin(entry))

    plain_entry = np.where(plain_score >= threshold, idx[chosen, 0], -1)
    # Plain cosine serves the nearest entry: when the guarded rule refuses that one, the
    # guard removed a hit (the router may still serve another candidate).
    removed = _Removed()
    for k, q in enumerate(chosen.tolist()):
        if plain_score[k] >= threshold:
            hit, reasons = rule(similars[q], origins[int(idx[q, 0])], float(sims[q, 0]), threshold)
            if not hit:
                removed.add(reasons, correct=bool(plain_own[k]))
    return EvalReport(
        protocol="retrieval",
        name=_named(path, split),
        threshold=threshold,
        size=len(chosen),
        plain=_retrieval_counts(plain_score, plain_own, threshold, twin(plain_entry)),
        shipped=shipped_at(threshold),
        plain_curve=_curve(lambda t: _retrieval_counts(plain_score, plain_own, t)),
        shipped_curve=_curve(shipped_at),
        removed=removed.rows(),
    )


# --------------------------------------------------------------------------- output


def format_report(*reports: EvalReport) -> str:
    """Both rules side by side, one block per report."""
    lines: list[str] = []
    for r in reports:
        pos = r.plain.positives
        extra = f", {pos} positive" if r.protocol == "pairwise" else ""
        lines.append(
            f"{r.protocol} {r.name} ({r.size} {'pairs' if r.protocol == 'pairwise' else 'lookups'}"
            f"{extra}), threshold {r.threshold:g}"
        )
        lines.append(
            f"  {'rule':<18}{'precision':>10}{'recall':>8}{'false-hit':>11}"
            f"{'correct':>9}{'wrong':>7}{'miss':>7}"
        )
        for label, c in (("plain cosine", r.plain), ("shipped decision", r.shipped)):
            lines.append(
                f"  {label:<18}{c.precision:>10.3f}{c.recall:>8.3f}{c.false_hit_rate:>11.4f}"
                f"{c.correct:>9}{c.wrong:>7}{c.miss:>7}"
            )
        if r.protocol == "retrieval" and (r.plain.same_text or r.shipped.same_text):
            lines.append(
                f"  (of the wrong hits, an entry with the very same text as the pair's own: "
                f"plain {r.plain.same_text}, shipped {r.shipped.same_text})"
            )
        if r.removed:
            lines.append("  plain-cosine hits the shipped decision removed, by guard rule"
                         " (a pair vetoed by several rules counts under each):")
            lines.append(f"    {'rule':<18}{'correct removed':>17}{'wrong removed':>15}")
            for rule, correct, wrong in r.removed:
                lines.append(f"    {rule:<18}{correct:>17}{wrong:>15}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot_pr(reports: Sequence[EvalReport], path: Path | str) -> Path:
    """Precision against recall along the threshold sweep, both rules, one panel per report.

    The marked points are the reports' own threshold.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, works on a headless host
    import matplotlib.pyplot as plt

    n = max(len(reports), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.5), squeeze=False)
    for ax, r in zip(axes[0], reports, strict=False):
        for label, curve, counts, style in (
            ("plain cosine", r.plain_curve, r.plain, "--"),
            ("shipped decision", r.shipped_curve, r.shipped, "-"),
        ):
            (line,) = ax.plot([p[2] for p in curve], [p[1] for p in curve], style, label=label)
            ax.plot([counts.recall], [counts.precision], "o", color=line.get_color())
        ax.set_title(f"{r.protocol}: {r.name} (marks at {r.threshold:g})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- command


def _default_embedder() -> MiniLMEmbedder:
    """The model the cache would run here: CACHEBACK_MODEL_DIR and CACHEBACK_EMBED_COMPUTE apply."""
    from cacheback.adapters.embedders import MiniLMEmbedder
    from cacheback.core._settings import Settings

    settings = Settings.from_env()
    return MiniLMEmbedder(settings.model_dir, compute=settings.embed_compute)


def _default_embed() -> EmbedFn:
    embedder = _default_embedder()

    def embed(texts: Sequence[str]) -> NDArray[np.float32]:
        return np.asarray(embedder.embed(list(texts)), dtype=np.float32)

    return embed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cacheback eval",
        description="Measure hit quality: plain cosine against the shipped decision.",
    )
    p.add_argument("--pairs", type=Path, default=None,
                   help=f"labelled pair CSV (default, when neither file is named: {DEFAULT_PAIRS})")
    p.add_argument("--retrieval", type=Path, default=None,
                   help=f"origin/similar JSON (default, when neither file is named: {DEFAULT_RETRIEVAL})")
    p.add_argument("--threshold", type=float, default=0.92,
                   help="similarity threshold (default 0.92)")
    p.add_argument("--plot", default=str(DEFAULT_PLOT),
                   help=f"precision-recall PNG to write (default {DEFAULT_PLOT}; '' for none)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    p.add_argument("--split", choices=SPLITS, default="all",
                   help="count only the rows of one part of the fixed split (a hash of each "
                   "row's texts): 'tuning' (what the guard was fitted on) or 'held-back' "
                   "(default all)")
    p.add_argument("--columns", default=None, metavar="FIRST,SECOND,LABEL",
                   help="the pair file's two text columns and its 0/1 label column (default: "
                   "found from the header: question1,question2,is_duplicate, "
                   "sentence1,sentence2,label, text1,text2,label, query1,query2,duplicate, ...)")
    return p


def eval_main(argv: list[str] | None = None, *, embed: EmbedFn | None = None) -> int:
    """``cacheback eval``: 0 on success, 1 when there is nothing to evaluate, 2 on bad use."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold <= 1.0:
        parser.error("--threshold must be in (0, 1]")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        columns = parse_columns(args.columns) if args.columns is not None else None
    except ColumnError as exc:
        parser.error(str(exc))
    pairs, retrieval = args.pairs, args.retrieval
    if pairs is None and retrieval is None:  # the default files only when neither is named
        pairs = DEFAULT_PAIRS if DEFAULT_PAIRS.is_file() else None
        retrieval = DEFAULT_RETRIEVAL if DEFAULT_RETRIEVAL.is_file() else None
    for given in (args.pairs, args.retrieval):
        if given is not None and not given.is_file():
            print(f"cacheback eval: no such file: {given}", file=sys.stderr)
            return 1
    if pairs is None and retrieval is None:
        print("cacheback eval: nothing to evaluate (give --pairs and/or --retrieval)",
              file=sys.stderr)
        return 1
    embed_fn = embed if embed is not None else _default_embed()
    progress = sys.stderr if sys.stderr.isatty() else None
    reports: list[EvalReport] = []
    try:
        if pairs is not None:
            reports.append(run_pairwise(pairs, embed_fn, args.threshold, limit=args.limit,
                                        progress=progress, columns=columns, split=args.split))
        if retrieval is not None:
            reports.append(run_retrieval(retrieval, embed_fn, args.threshold,
                                         limit=args.limit, progress=progress, split=args.split))
    except ColumnError as exc:
        print(f"cacheback eval: malformed input in {pairs}: {exc}", file=sys.stderr)
        return 1
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        print(f"cacheback eval: malformed input: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_report(*reports))
    if args.plot:
        out = plot_pr(reports, args.plot)
        print(f"precision-recall plot: {out}")
    return 0
