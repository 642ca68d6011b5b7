"""The NumPy MiniLM fallback against onnxruntime: how close its vectors are, whether it
decides hits the same way, and how much slower it is.

    python loadtests/eval_numpy_fallback.py --pairs PATH/meancache_val.csv \
        [--retrieval PATH/gptcache_mock_data.json] [--questions 1000] [--threshold 0.92] [--speed-only]

``--pairs`` is a labelled CSV (question1,question2,...); its first rows give the
questions (--questions of them, two per row). Prints, for those questions, the cosine
of each NumPy vector to onnxruntime's float32 computation of the same weights and to
the default int8 computation; then the plain-cosine hit/miss decision at --threshold
on each row (and on each pair of ``--retrieval``, a JSON list of {origin, similar})
for NumPy and for the default, with every disagreement; then single-query and batch
latency of each. Reads the data at run time and stores none of it. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def read_pairs(path: Path, rows: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if len(row) >= 2 and row[0].strip() and row[1].strip():
                out.append((row[0], row[1]))
            if len(out) >= rows:
                break
    return out


def embed_all(embedder: Any, texts: Sequence[str], batch: int = 64) -> np.ndarray[Any, Any]:
    return np.vstack([embedder.embed(list(texts[i : i + batch])) for i in range(0, len(texts), batch)])


def decisions(
    vectors: np.ndarray[Any, Any], threshold: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(cosine, hit) per pair, the pairs being rows (2i, 2i+1)."""
    cos = (vectors[0::2] * vectors[1::2]).sum(axis=1)
    return cos, cos >= threshold


def latency(embedders: dict[str, Any], texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Single-query p50 and a batch of 32 per embedder, interleaved query by query so that
    other load on the machine falls on every embedder alike."""
    for e in embedders.values():
        e.embed(list(texts[:8]))  # warm
    single: dict[str, list[float]] = {name: [] for name in embedders}
    for text in texts[:60]:
        for name, e in embedders.items():
            t = time.perf_counter()
            e.embed([text])
            single[name].append(time.perf_counter() - t)
    batch: dict[str, list[float]] = {name: [] for name in embedders}
    for start in (100, 132, 164):
        for name, e in embedders.items():
            t = time.perf_counter()
            e.embed(list(texts[start : start + 32]))
            batch[name].append(time.perf_counter() - t)
    return {
        name: {
            "single_p50_ms": statistics.median(single[name]) * 1e3,
            "batch32_median_ms": statistics.median(batch[name]) * 1e3,
        }
        for name in embedders
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--retrieval", type=Path)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.92)
    parser.add_argument("--speed-only", action="store_true", help="skip the vector and decision checks")
    args = parser.parse_args()

    from cacheback.adapters.embedders import MiniLMEmbedder
    from cacheback.adapters.embedders._numpy_minilm import NumpyMiniLMEmbedder

    pairs = read_pairs(args.pairs, args.questions // 2)
    texts = [t for pair in pairs for t in pair]
    sets = {"pairs": texts}
    if args.retrieval is not None:
        rows = json.loads(args.retrieval.read_text(encoding="utf-8"))
        sets["retrieval"] = [t for row in rows for t in (row["origin"], row["similar"])]

    embedders = {
        "numpy": NumpyMiniLMEmbedder(),
        "float32": MiniLMEmbedder(compute="float32", model_cache=None),
        "int8": MiniLMEmbedder(compute="int8", model_cache=None),
    }
    for e in embedders.values():
        e.load()
    report: dict[str, Any] = {"questions": len(texts), "threshold": args.threshold}
    for set_name, set_texts in ({} if args.speed_only else sets).items():
        vectors = {name: embed_all(e, set_texts) for name, e in embedders.items()}
        for other in ("float32", "int8"):
            cos = (vectors["numpy"] * vectors[other]).sum(axis=1)
            report[f"{set_name}: numpy vs {other} cosine"] = {
                "min": float(cos.min()),
                "p01": float(np.quantile(cos, 0.01)),
                "mean": float(cos.mean()),
            }
        cos = (vectors["float32"] * vectors["int8"]).sum(axis=1)
        report[f"{set_name}: float32 vs int8 cosine (reference)"] = {
            "min": float(cos.min()),
            "mean": float(cos.mean()),
        }
        verdicts = {name: decisions(v, args.threshold) for name, v in vectors.items()}
        for other in ("int8", "float32"):
            differ = np.flatnonzero(verdicts["numpy"][1] != verdicts[other][1])
            report[f"{set_name}: decisions numpy vs {other}"] = {
                "pairs": len(verdicts["numpy"][1]),
                "hits_numpy": int(verdicts["numpy"][1].sum()),
                f"hits_{other}": int(verdicts[other][1].sum()),
                "disagreements": [
                    {
                        "pair": int(i),
                        "numpy": float(verdicts["numpy"][0][i]),
                        other: float(verdicts[other][0][i]),
                    }
                    for i in differ
                ],
            }
    speed = latency(embedders, texts)
    report["latency"] = speed
    report["numpy slower than int8 (single p50, batch of 32)"] = [
        speed["numpy"]["single_p50_ms"] / speed["int8"]["single_p50_ms"],
        speed["numpy"]["batch32_median_ms"] / speed["int8"]["batch32_median_ms"],
    ]
    report["numpy slower than float32 (single p50, batch of 32)"] = [
        speed["numpy"]["single_p50_ms"] / speed["float32"]["single_p50_ms"],
        speed["numpy"]["batch32_median_ms"] / speed["float32"]["batch32_median_ms"],
    ]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
