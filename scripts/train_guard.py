"""Fit the verbatim decision's scorer and write ``cacheback/engine/_guard_model.json``.

    python scripts/train_guard.py [--pairs CSV ...] [--retrieval JSON ...] [--out FILE]
                                  [--embedding-cache NPZ] [--dry-run]

Training rows are query/candidate pairs that pass the guard and whose cosine is within
reach of a hit (``--floor``): every labelled pair of a pairwise CSV, and for a retrieval
file each lookup's five nearest entries (its own pair's entry is a positive, the others
negatives). One logistic regression is fitted on ``FEATURE_NAMES``; the shipped score
reads its risk terms in cosine units, as a penalty (see ``GuardModel``).

Before fitting on everything, the script checks for overfitting: it splits the rows in
two halves (by pair, seeded), fits on each half and reports the held-out metrics next
to the training ones.
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
    _top_k,
    embed_texts,
    load_pairs,
    load_retrieval,
)
from cacheback.engine._guard import FEATURE_NAMES, GuardModel, guard_reasons, pair_features

OUT = Path(__file__).resolve().parent.parent / "cacheback" / "engine" / "_guard_model.json"
FLOOR = 0.80  # rows far below any sensible threshold say little about the decision
L2 = 1.0  # ridge on the weights (not the bias), in units of the summed log-loss
MAX_SHIFT = 0.05


@dataclass
class Rows:
    x: NDArray[np.float64]  # features, FEATURE_NAMES order
    y: NDArray[np.float64]  # 1 = same question
    group: NDArray[np.int_]  # pair id, so a split never separates a lookup's rows
    source: list[str]


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
) -> Rows:
    xs: list[tuple[float, ...]] = []
    ys: list[float] = []
    groups: list[int] = []
    sources: list[str] = []
    gid = 0
    for path in pairs_files:
        rows = load_pairs(path)
        vec = embed_texts([t for a, b, _ in rows for t in (a, b)], embed, sys.stderr)
        for q1, q2, label in rows:
            gid += 1
            cos = float(vec[q1] @ vec[q2])
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
        for q, (_, similar) in enumerate(pairs):
            gid += 1
            for j, sim in zip(idx[q], sims[q], strict=True):
                # An identical origin text is the same cached entry.
                same = j == q or origins[j] == origins[q]
                if sim < floor or guard_reasons(similar, origins[j]):
                    continue
                xs.append(pair_features(similar, origins[j], float(sim)))
                ys.append(1.0 if same else 0.0)
                groups.append(gid)
                sources.append(path.name)
    return Rows(np.array(xs), np.array(ys), np.array(groups), sources)


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
                [s for s, m in zip(rows.source, mask, strict=True) if m])


def holdout(rows: Rows, threshold: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    groups = np.unique(rows.group)
    half = set(rng.permutation(groups)[: len(groups) // 2].tolist())
    in_a = np.array([g in half for g in rows.group])
    for train_mask, name in ((in_a, "A"), (~in_a, "B")):
        train, test = _subset(rows, train_mask), _subset(rows, ~train_mask)
        model = fit_model(train)
        for label, part in (("train", train), ("held-out", test)):
            for source in sorted(set(part.source)):
                mask = np.array([s == source for s in part.source])
                m = metrics(model, _subset(part, mask), threshold)
                print(
                    f"fit on half {name}, {label:<8} {source:<28} "
                    f"guard+cosine P={m['plain_precision']:.3f} R={m['plain_recall']:.3f} "
                    f"wrong={m['plain_wrong']:.0f} | "
                    f"guard+model P={m['model_precision']:.3f} R={m['model_recall']:.3f} "
                    f"wrong={m['model_wrong']:.0f}"
                )


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
    rows = collect(pairs, retrieval, embed, args.floor)
    print(f"{len(rows.y)} rows ({int(rows.y.sum())} positive) at cosine >= {args.floor}")
    holdout(rows, args.threshold)
    model = fit_model(rows)
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
            "floor": args.floor,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
