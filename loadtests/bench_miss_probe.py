"""The miss probe against the model it stands in front of (issue: lower the model's cost).

    python loadtests/bench_miss_probe.py [--pairs CSV] [--retrieval JSON] [--threshold 0.92]

Both sets are read for measuring only. For each, the model's own similarity decides what
a hit is (>= threshold); the probe must keep those lookups on the inference path.

- pairs (labelled CSV, ``question1`` / ``question2``): each pair is a one-entry scope;
  hits kept = model hits the probe does not skip; skipped = non-hit pairs it skips.
- realistic mix (retrieval JSON, ``origin`` / ``similar``): each ``similar`` is looked up
  in a scope holding the *other* origins (no hit is possible unless the model finds one
  elsewhere); skipped = lookups whose inference the probe saves. Hits kept is measured
  in the scope holding all origins.

Prints the shipped margin's figures, then the trade-off over other margins, and the cost
of one probe vector next to one embedding.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np

from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.adapters.embedders._miss_probe import MissProbe

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=EVAL / "meancache_val.csv")
    parser.add_argument("--retrieval", type=Path, default=EVAL / "gptcache_mock_data.json")
    parser.add_argument("--threshold", type=float, default=0.92)
    args = parser.parse_args()
    thr = args.threshold

    emb = MiniLMEmbedder(keep_warm_ms=0)
    _, tokenizer = emb._load()
    probe = MissProbe.load(tokenizer)
    with args.pairs.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    q1 = [r["question1"] for r in rows]
    q2 = [r["question2"] for r in rows]
    mock = json.loads(args.retrieval.read_text(encoding="utf-8"))
    origins = [m["origin"] for m in mock]
    similars = [m["similar"] for m in mock]

    t0 = time.perf_counter()
    m1, m2, mo, ms = (emb.embed(x) for x in (q1, q2, origins, similars))
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p1, p2, po, ps = (probe.vectors(x) for x in (q1, q2, origins, similars))
    probe_s = time.perf_counter() - t0
    n_texts = 2 * len(q1) + 2 * len(origins)

    model_pair = (m1 * m2).sum(1)
    probe_pair = (p1 * p2).sum(1)
    pair_hit = model_pair >= thr
    others = ~np.eye(len(origins), dtype=bool)
    model_all = ms @ mo.T
    probe_all = ps @ po.T
    full_hit = model_all.max(1) >= thr
    full_probe = probe_all.max(1)
    mix_probe = np.where(others, probe_all, -1.0).max(1)
    mix_model_hits = int((np.where(others, model_all, -1.0).max(1) >= thr).sum())

    def line(margin: float) -> str:
        cut = thr - margin
        return (
            f"margin {margin:5.3f} (cut {cut:.3f}):"
            f" pairs: hits kept {(probe_pair[pair_hit] >= cut).mean():.4f},"
            f" non-hits skipped {(probe_pair[~pair_hit] < cut).mean():.3f} |"
            f" mix: hits kept {(full_probe[full_hit] >= cut).mean():.4f},"
            f" inference skipped {(mix_probe < cut).mean():.3f}"
        )

    print(
        f"model hits at {thr}: pairs {int(pair_hit.sum())}/{len(rows)}, all-origins scope"
        f" {int(full_hit.sum())}/{len(similars)}, other-origins scope {mix_model_hits} (lookups that the"
        f" model matches elsewhere; the probe must not skip them either)"
    )
    print(f"probe/model similarity correlation on pairs: {np.corrcoef(model_pair, probe_pair)[0, 1]:.3f}")
    print("shipped  " + line(probe.margin))
    for margin in (0.2, 0.3, 0.4, 0.5):
        print("         " + line(margin))
    for keep in (0.99, 0.995):
        cut = float(np.quantile(probe_pair[pair_hit], 1 - keep))
        print(f"margin that keeps {keep:.1%} of the pairs' model hits: " + line(thr - cut))
    one = ["How do I reverse a list in Python?"]
    probe_us = statistics.median(_time(lambda: probe.vectors(one)) for _ in range(200)) * 1e6
    embed_ms = statistics.median(_time(lambda: emb.embed(one)) for _ in range(50)) * 1e3
    print(
        f"cost: one probe vector {probe_us:.0f} us, one embedding {embed_ms:.1f} ms (p50, one short query);"
        f" bulk: {1e6 * probe_s / n_texts:.0f} us vs {1e3 * embed_s / n_texts:.2f} ms per text"
    )


def _time(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
