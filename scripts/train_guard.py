"""Fit the verbatim decision's scorer and write ``cacheback/guard/_guard_model.json``.

    python scripts/train_guard.py [--pairs CSV ...] [--retrieval JSON ...] [--out FILE]
                                  [--embedding-cache NPZ] [--dry-run]

Training rows are query/candidate pairs that pass the guard and whose cosine is within
reach of a hit (``--floor``): every labelled pair of a pairwise CSV, and for a retrieval
file each lookup's five nearest entries (its own pair's entry is a positive, the others
negatives). One logistic regression is fitted on ``FEATURE_NAMES``; the shipped score
reads its risk terms in cosine units, as a penalty (see ``GuardModel``).

The model is fitted on the tuning part of the fixed split only
(``cacheback/adapters/eval/_split.py``: a hash of each pair's or lookup's two texts
puts it in the tuning or the held-back part, about half each). The script reports the
tuning and the held-back metrics side by side, twice: per row (the scorer alone, on rows
that pass the guard), and as the engine decides (every labelled pair of the part through
the guarded decision; every lookup of the part through the engine's router, near-tie
break included), next to plain cosine on the same part. ``cacheback eval --split
held-back`` gives the held-back figures with the shipped model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cacheback.adapters.eval._hit_eval import (
    DEFAULT_PAIRS,
    DEFAULT_RETRIEVAL,
    TOP_K,
    EmbedFn,
    _memo_rule,
    _routed,
    _top_k,
    embed_texts,
    load_pairs,
    load_retrieval,
)
from cacheback.adapters.eval._split import split_of
from cacheback.core._types import CacheEntry, Candidate
from cacheback.guard import (
    FEATURE_NAMES,
    GuardModel,
    guard_reasons,
    pair_features,
    verbatim_decision,
)

OUT = Path(__file__).resolve().parent.parent / "cacheback" / "guard" / "_guard_model.json"
FLOOR = 0.80  # rows far below any sensible threshold say little about the decision
L2 = 1.0  # ridge on the weights (not the bias), in units of the summed log-loss
MAX_SHIFT = 0.05


@dataclass
class Rows:
    x: NDArray[np.float64]  # features, FEATURE_NAMES order
    y: NDArray[np.float64]  # 1 = same question
    group: NDArray[np.int_]  # pair id, so a split never separates a lookup's rows
    source: list[str]
    held: NDArray[np.bool_]  # the row's pair or lookup is in the held-back part


@dataclass
class Lookups:
    """Everything the engine-level check replays, by the same group ids as ``Rows``."""

    # (group, query, cached text, label, cosine) for every labelled pair
    pairs: list[tuple[int, str, str, int, float]]
    # (group, query, nearest candidates best first, own entry id) for every lookup
    retrieval: list[tuple[int, str, list[Candidate], int]]
    held_back: set[int]  # groups of the held-back part


def _cached_embed(embed: EmbedFn, cache: Path | None) -> EmbedFn:
    """Wrap ``embed`` with an on-disk cache of text -> vector (development speed-up)."""
    store: dict[str, NDArray[np.float32]] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            store.update(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def wrapped(texts: Sequence[str]) -> NDArray[np.float32]:
        todo = [t for t in dict.fromkeys(texts) if t not in store]
        if todo:
            store.update(zip(todo, embed(todo), strict=True))
            if cache is not None:
                keys = list(store)
                np.savez(cache, texts=np.array(keys), vectors=np.stack([store[k] for k in keys]))
        return np.stack([store[t] for t in texts]).astype(np.float32)

    return wrapped


def collect(
    pairs_files: Sequence[Path], retrieval_files: Sequence[Path], embed: EmbedFn, floor: float
) -> tuple[Rows, Lookups]:
    xs: list[tuple[float, ...]] = []
    ys: list[float] = []
    groups: list[int] = []
    sources: list[str] = []
    lookups = Lookups([], [], set())
    gid = 0
    for path in pairs_files:
        rows = load_pairs(path)
        vec = embed_texts([t for a, b, _ in rows for t in (a, b)], embed, sys.stderr)
        for q1, q2, label in rows:
            gid += 1
            if split_of(q1, q2) == "held-back":
                lookups.held_back.add(gid)
            cos = float(vec[q1] @ vec[q2])
            lookups.pairs.append((gid, q2, q1, label, cos))
            if cos < floor or guard_reasons(q2, q1):
                continue
            xs.append(pair_features(q2, q1, cos))
            ys.append(float(label))
            groups.append(gid)
            sources.append(path.name)
    for path in retrieval_files:
        pairs = load_retrieval(path)
        vec = embed_texts([t for p in pairs for t in p], embed, sys.stderr)
        origins = [o for o, _ in pairs]
        keys = np.stack([vec[o] for o in origins])
        queries = np.stack([vec[s] for _, s in pairs])
        idx, sims = _top_k(queries, keys, TOP_K)
        entries = [CacheEntry(j, path.name, text, "", None, 0.0, np.inf, 0.0)
                   for j, text in enumerate(origins)]
        for q, (origin, similar) in enumerate(pairs):
            gid += 1
            if split_of(origin, similar) == "held-back":
                lookups.held_back.add(gid)
            lookups.retrieval.append((gid, similar, [
                Candidate(entries[int(j)], float(sim)) for j, sim in zip(idx[q], sims[q], strict=True)
            ], q))
            for j, sim in zip(idx[q], sims[q], strict=True):
                # An identical origin text is the same cached entry.
                same = j == q or origins[j] == origins[q]
                if sim < floor or guard_reasons(similar, origins[j]):
                    continue
                xs.append(pair_features(similar, origins[j], float(sim)))
                ys.append(1.0 if same else 0.0)
                groups.append(gid)
                sources.append(path.name)
    held = np.array([g in lookups.held_back for g in groups], dtype=np.bool_)
    return Rows(np.array(xs), np.array(ys), np.array(groups), sources, held), lookups


def fit_logistic(
    x: NDArray[np.float64], y: NDArray[np.float64], l2: float = L2, iters: int = 50
) -> tuple[NDArray[np.float64], float]:
    """Ridge-penalised logistic regression by Newton's method on standardised inputs."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    weights = w[1:] / std
    bias = float(w[0] - np.sum(w[1:] * mean / std))
    return weights, bias


def fit_model(rows: Rows, max_shift: float = MAX_SHIFT) -> GuardModel:
    weights, bias = fit_logistic(rows.x, rows.y)
    return GuardModel(weights=tuple(float(w) for w in weights), bias=bias, max_shift=max_shift)


def metrics(model: GuardModel, rows: Rows, threshold: float) -> dict[str, float]:
    """Precision and recall of plain cosine and of the model at ``threshold``."""
    score = np.array([model.score(x) for x in rows.x])
    out: dict[str, float] = {}
    for name, s in (("plain", rows.x[:, 0]), ("model", score)):
        hit = s >= threshold
        tp = float(np.sum(hit & (rows.y == 1)))
        fp = float(np.sum(hit & (rows.y == 0)))
        out[f"{name}_precision"] = tp / (tp + fp) if tp + fp else 1.0
        out[f"{name}_recall"] = tp / max(float(np.sum(rows.y == 1)), 1.0)
        out[f"{name}_wrong"] = fp
    return out


def _subset(rows: Rows, mask: NDArray[np.bool_]) -> Rows:
    return Rows(rows.x[mask], rows.y[mask], rows.group[mask],
                [s for s, m in zip(rows.source, mask, strict=True) if m], rows.held[mask])


def engine_metrics(
    model: GuardModel, lookups: Lookups, groups: set[int], threshold: float
) -> str:
    """Plain cosine and the guarded decision as the engine applies them, on ``groups``."""
    out: list[str] = []
    pairs = [p for p in lookups.pairs if p[0] in groups]
    if pairs:
        positives = max(sum(label for _, _, _, label, _ in pairs), 1)
        for name, hit in (
            ("plain", lambda q, c, cos: cos >= threshold),
            ("shipped", lambda q, c, cos: verbatim_decision(q, c, cos, threshold,
                                                            model=model).hit),
        ):
            hits = [label for _, q, c, label, cos in pairs if hit(q, c, cos)]
            precision = sum(hits) / len(hits) if hits else 1.0
            out.append(f"pairwise {name} P={precision:.3f} R={sum(hits) / positives:.3f}")
    looks = [r for r in lookups.retrieval if r[0] in groups]
    if looks:
        rule = _memo_rule(model)
        served = [(_routed(q, cands, threshold, rule), own) for _, q, cands, own in looks]
        plain = [(cands[0].entry_id if cands and cands[0].similarity >= threshold else None,
                  own) for _, _, cands, own in looks]
        for name, got in (("plain", plain), ("shipped", served)):
            correct = sum(1 for e, own in got if e == own)
            wrong = sum(1 for e, own in got if e is not None and e != own)
            out.append(f"retrieval {name} {correct} correct / {wrong} wrong")
    return " | ".join(out)


def validate(rows: Rows, lookups: Lookups, threshold: float) -> GuardModel:
    """Fit on the tuning part; print the tuning and the held-back figures; return the fit."""
    tuning, held = _subset(rows, ~rows.held), _subset(rows, rows.held)
    model = fit_model(tuning)
    for label, part in (("tuning", tuning), ("held-back", held)):
        for source in sorted(set(part.source)):
            mask = np.array([s == source for s in part.source])
            m = metrics(model, _subset(part, mask), threshold)
            print(
                f"{label:<9} {source:<28} "
                f"guard+cosine P={m['plain_precision']:.3f} R={m['plain_recall']:.3f} "
                f"wrong={m['plain_wrong']:.0f} | "
                f"guard+model P={m['model_precision']:.3f} R={m['model_recall']:.3f} "
                f"wrong={m['model_wrong']:.0f}"
            )
    every = {p[0] for p in lookups.pairs} | {r[0] for r in lookups.retrieval}
    for label, groups in (("tuning", every - lookups.held_back),
                          ("held-back", every & lookups.held_back)):
        print(f"{label:<9} as the engine decides: "
              + engine_metrics(model, lookups, groups, threshold))
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=Path, action="append")
    p.add_argument("--retrieval", type=Path, action="append")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--floor", type=float, default=FLOOR)
    p.add_argument("--threshold", type=float, default=0.92)
    p.add_argument("--embedding-cache", type=Path, default=None,
                   help="npz file of text vectors, reused between runs")
    p.add_argument("--dry-run", action="store_true", help="report only, write nothing")
    args = p.parse_args(argv)
    pairs = args.pairs or ([DEFAULT_PAIRS] if DEFAULT_PAIRS.is_file() else [])
    retrieval = args.retrieval or ([DEFAULT_RETRIEVAL] if DEFAULT_RETRIEVAL.is_file() else [])
    if not pairs and not retrieval:
        p.error("no training data (give --pairs and/or --retrieval)")

    from cacheback.adapters.eval._hit_eval import _default_embed

    embed = _cached_embed(_default_embed(), args.embedding_cache)
    rows, lookups = collect(pairs, retrieval, embed, args.floor)
    print(f"{len(rows.y)} rows ({int(rows.y.sum())} positive) at cosine >= {args.floor}")
    print(f"{int((~rows.held).sum())} tuning rows, {int(rows.held.sum())} held-back rows")
    model = validate(rows, lookups, args.threshold)
    for name, w in zip(FEATURE_NAMES, model.weights, strict=True):
        print(f"  {name:<20}{w:+.4f}  ({w / model.weights[0]:+.4f} cosine per unit)")
    print(f"  bias {model.bias:+.4f}")
    if not args.dry_run:
        doc = {
            "features": list(FEATURE_NAMES),
            "weights": [round(w, 6) for w in model.weights],
            "bias": round(model.bias, 6),
            "max_shift": model.max_shift,
            "trained_on": [f.name for f in [*pairs, *retrieval]],
            "split": "tuning part only (cacheback/adapters/eval/_split.py)",
            "floor": args.floor,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
