"""Second cuts for the miss probe, calibrated on the build's own data, measured on the eval.

    python loadtests/probe_second_cut.py [--work build/miss_probe] [--keep 0.999]

Needs the build's cache (``python scripts/build_miss_probe.py`` writes ``texts.json`` and
``data.npz`` to ``--work``). The eval sets are read for measuring only; the model's
vectors of them are cached in ``--work/eval.npz``.

A second cut is checked only on the entries the probe cannot rule out; a lookup is a
clear miss when every entry fails the probe cut *or* the second cut. Second cuts:

- ``lex``: cosine of the two texts' token sets, each token weighted by its idf on the
  build corpus;
- ``align``: each token matched to its nearest token of the other text (cosine of the
  probe table's rows), idf-weighted, F of both directions (BERTScore-style).

Calibration (own data only): the build's held-out pairs (a sentence and a light edit) and
near pairs mined from the build corpus by the model's cosine (>= 0.80); positives are
the model's own hits. Cuts keep ``--keep`` of them; among those, the pair of cuts that
skips most of an own mix (each edited sentence looked up among 999 other held-out
sentences) wins. The last lines (marked "eval frontier") choose cuts on the eval itself:
they show the best a rule of that form could do, and are never shipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from _probe_augment import augmented
from numpy.typing import NDArray

from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.adapters.embedders._miss_probe import TABLE_FILE, MissProbe

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
Arr = NDArray[np.float32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/miss_probe"))
    parser.add_argument("--pairs", type=Path, default=EVAL / "meancache_val.csv")
    parser.add_argument("--retrieval", type=Path, default=EVAL / "gptcache_mock_data.json")
    parser.add_argument("--threshold", type=float, default=0.92)
    parser.add_argument("--keep", type=float, default=0.999)
    parser.add_argument("--augment", action="store_true", help="add augmented near pairs (_probe_augment)")
    args = parser.parse_args()
    thr = args.threshold
    emb = MiniLMEmbedder(keep_warm_ms=0)
    _, tok = emb._load()
    probe = MissProbe.load(tok)
    special = {tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")}
    with np.load(TABLE_FILE) as d:
        rows = d["rows"].astype(np.float32) * d["scale"].astype(np.float32)[:, None]
    unit_rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    def sets(texts: list[str]) -> list[list[int]]:
        return [sorted({i for i in e.ids[:256] if i not in special}) for e in tok.encode_batch(texts)]

    build = json.loads((args.work / "texts.json").read_text())
    arrays = np.load(args.work / "data.npz")
    df = np.zeros(tok.get_vocab_size())
    for s in sets(build["texts"]):
        df[s] += 1
    idf = (np.log((len(build["texts"]) + 1) / (df + 1)) + 1).astype(np.float32)

    def lex(a: list[int], b: list[int]) -> float:
        shared = sum(float(idf[t]) ** 2 for t in set(a) & set(b))
        return shared / max(math.sqrt(float((idf[a] ** 2).sum() * (idf[b] ** 2).sum())), 1e-9)

    def align(a: list[int], b: list[int]) -> float:
        if not a or not b:
            return 0.0
        sims = unit_rows[a] @ unit_rows[b].T
        r = float((sims.max(1) * idf[a]).sum() / idf[a].sum())
        p = float((sims.max(0) * idf[b]).sum() / idf[b].sum())
        return 2 * r * p / max(r + p, 1e-9)

    def pair_features(a: list[str], b: list[str]) -> dict[str, Arr]:
        sa, sb = sets(a), sets(b)
        return {
            "probe": (probe.vectors(a) * probe.vectors(b)).sum(1),
            "lex": np.array([lex(x, y) for x, y in zip(sa, sb, strict=True)], np.float32),
            "align": np.array([align(x, y) for x, y in zip(sa, sb, strict=True)], np.float32),
        }

    def scope_features(queries: list[str], entries: list[str], low: float) -> dict[str, Arr]:
        """Every query against every entry; the second cuts only where the probe >= low."""
        sq, se = sets(queries), sets(entries)
        sims = probe.vectors(queries) @ probe.vectors(entries).T
        out = {
            "probe": sims,
            "lex": np.full(sims.shape, -1.0, np.float32),
            "align": np.full(sims.shape, -1.0, np.float32),
        }
        for i, j in zip(*np.nonzero(sims >= low), strict=True):
            out["lex"][i, j] = lex(sq[i], se[j])
            out["align"][i, j] = align(sq[i], se[j])
        return out

    # own data: held-out pairs and mined near pairs (the model is the teacher)
    held = build["held"]
    m = arrays["M"]
    ii, jj = [], []
    for s in range(0, len(m), 2000):
        block = m[s : s + 2000] @ m.T
        block[
            np.arange(m.shape[0])[None, :] <= np.arange(s, s + block.shape[0])[:, None]
        ] = -1  # each pair once
        r, c = np.nonzero(block >= 0.80)
        ii += list(r + s)
        jj += list(c)
    texts = build["texts"]
    own_a = [a for a, _ in held] + [texts[i] for i in ii]
    own_b = [b for _, b in held] + [texts[j] for j in jj]
    own_model = np.concatenate([(arrays["H1"] * arrays["H2"]).sum(1), (m[ii] * m[jj]).sum(1)])
    own_mix = []
    if args.augment:
        bases, pairs, mb, mv = augmented(args.work, emb)
        own_a += [a for a, _ in pairs]
        own_b += [v for _, v in pairs]
        own_model = np.concatenate([own_model, (np.repeat(mb, 2, 0) * mv).sum(1)])
        mix_q, mix_e = [pairs[2 * i][1] for i in range(len(bases))], bases
    else:
        mix_q, mix_e = [b for _, b in held], [a for a, _ in held]
    for s in range(0, len(mix_e) - 999, 1000):
        f = scope_features(mix_q[s : s + 1000], mix_e[s : s + 1000], 0.3)
        own_mix.append((f, ~np.eye(1000, dtype=bool)))
    own = pair_features(own_a, own_b)
    pos = own_model >= thr
    print(
        f"own: {len(own_a)} pairs ({len(held)} held-out, {len(ii)} mined"
        f"{', augmented' if args.augment else ''}), {int(pos.sum())} model hits;"
        f" own mix {len(own_mix) * 1000} lookups"
    )

    # eval (measuring only)
    with args.pairs.open(encoding="utf-8") as fh:
        rows_csv = list(csv.DictReader(fh))
    q1, q2 = [r["question1"] for r in rows_csv], [r["question2"] for r in rows_csv]
    mock = json.loads(args.retrieval.read_text(encoding="utf-8"))
    origins, similars = [x["origin"] for x in mock], [x["similar"] for x in mock]
    cache = args.work / "eval.npz"
    if not cache.is_file():
        np.savez(cache, m1=emb.embed(q1), m2=emb.embed(q2), mo=emb.embed(origins), ms=emb.embed(similars))
    e = np.load(cache)
    pair_hit = (e["m1"] * e["m2"]).sum(1) >= thr
    full_hit = (e["ms"] @ e["mo"].T).max(1) >= thr
    others = ~np.eye(len(origins), dtype=bool)
    ep = pair_features(q1, q2)
    em = scope_features(similars, origins, 0.3)

    def maybe(f: dict[str, Any], cuts: dict[str, float]) -> Any:
        return np.logical_and.reduce([f[n] >= c for n, c in cuts.items()])

    def report(name: str, cuts: dict[str, float]) -> None:
        pm, mm = maybe(ep, cuts), maybe(em, cuts)
        kept_p, kept_m = pm[pair_hit].mean(), mm.any(1)[full_hit].mean()
        skip = (~(mm & others).any(1)).mean()
        cand = (em["probe"] * others >= cuts["probe"]).sum(1)
        text = ", ".join(f"{k} >= {v:.3f}" for k, v in cuts.items())
        print(
            f"{name:14s} {text:44s} pairs: hits kept {kept_p:.4f},"
            f" non-hits skipped {(~pm[~pair_hit]).mean():.3f} |"
            f" mix: hits kept {kept_m:.4f}, skipped {skip:.3f}"
            f" (probe candidates p50 {np.median(cand):.0f}, p90 {np.quantile(cand, 0.9):.0f})"
        )

    def own_skip(cuts: dict[str, float]) -> float:
        return float(np.mean(np.concatenate([~(maybe(f, cuts) & off).any(1) for f, off in own_mix])))

    need = int(np.ceil(args.keep * pos.sum()))
    for second in ("", "lex", "align"):
        best: tuple[float, dict[str, float]] | None = None
        for q in (0.0, 0.0002, 0.0005, 0.001) if second else (0.0,):
            cuts = {second: float(np.quantile(own[second][pos], q))} if second else {}
            ok = maybe(own, cuts) & pos if cuts else pos
            ranked = np.sort(own["probe"][ok])[::-1]
            if len(ranked) < need:
                continue
            cuts = {"probe": float(ranked[need - 1]), **cuts}
            skip = own_skip(cuts)
            if best is None or skip > best[0]:
                best = (skip, cuts)
        assert best is not None
        report(f"own {args.keep:.1%}", best[1])
    for second in ("lex", "align"):
        hits = ep[second][pair_hit]
        for q in (0.0, 0.001, 0.002, 0.003, 0.004):
            c2 = float(np.quantile(hits, q))
            ranked = np.sort(ep["probe"][pair_hit & (ep[second] >= c2)])[::-1]
            need_eval = int(np.ceil(0.995 * pair_hit.sum()))
            if len(ranked) >= need_eval:
                report("eval frontier", {"probe": max(float(ranked[need_eval - 1]), 0.3), second: c2})


if __name__ == "__main__":
    main()
