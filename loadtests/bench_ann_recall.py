"""Recall of the embedded HNSW index on planted near-duplicates, its query latency, build time
and memory, at several sizes and ef/M settings (issue: lower the model's cost, item 6).

    python loadtests/bench_ann_recall.py [--sizes 100000 1000000] [--builds 16:100,32:200]
        [--efs 64,128,256,auto] [--data sentences,uniform] [--queries 1000] [--timeout 1800]

The index is the store's own (``HnswIndex``), filled the way the store fills it (batches
through ``add``) and searched the way the store searches it: ``k`` = 21, what the store asks
for with the default ``top_k`` = 5. "auto" is the index's default ef for that size.

Data (384-dim, unit rows):

- ``sentences`` (the default with ``uniform``): entries grown around MiniLM embeddings of a
  few thousand template-composed questions, topic > subtopic > phrasing > entry
  (``loadtests/_sentence_vectors.py``); a query sits at cosine 0.92-0.98 to its entry along
  the directions the sentence embeddings vary in. The composed sentences are entries too.
- ``realistic`` (the earlier runs): real MiniLM embeddings of distinct questions from a
  labelled pairs file (``--pairs``, read for this only) are the anchors. Every entry sits around a random
  anchor at a cosine drawn from [0.55, 0.90], its offset drawn from the anchors' own
  covariance (so entries spread along the directions real embeddings vary in).
- ``uniform``: isotropic Gaussian rows (the worst case for a graph index).

Each query is a planted near-duplicate of one stored entry: cosine drawn from [0.92, 0.98]
to it, so every query has a neighbour a cache would serve. recall@1 counts the queries whose
top result is their exact nearest neighbour (brute force): the partner, or the rare entry
closer still (how often that happens is printed). Every build
runs in its own process so its memory and time are its own; a build slower than
``--timeout`` is stopped and reported as such. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cacheback.adapters.storage import HnswIndex

DIM = 384
K_STORE = 21  # the store's fetch for top_k = 5: max(2k, k + 16)
ADD_BATCH = 5000  # the store's rebuild chunk
EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
F32 = NDArray[np.float32]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def unit(mat: NDArray[Any]) -> F32:
    out: F32 = (mat / np.linalg.norm(mat, axis=1, keepdims=True)).astype(np.float32)
    return out


# -- data ------------------------------------------------------------------------------------


def embed_anchors(pairs: Path, count: int, out: Path) -> None:
    from cacheback.adapters.embedders import MiniLMEmbedder

    seen: dict[str, None] = {}
    with pairs.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for text in (row["question1"], row["question2"]):
                seen.setdefault(text.strip(), None)
            if len(seen) >= count:
                break
    texts = list(seen)[:count]
    emb = MiniLMEmbedder(keep_warm_ms=0)
    vecs = np.concatenate([emb.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    np.save(out, vecs.astype(np.float32))


class Sampler:
    """Offsets drawn from the anchors' covariance (realistic) or isotropic (uniform)."""

    def __init__(self, anchors: F32 | None, rng: np.random.Generator) -> None:
        self.rng = rng
        self.anchors = anchors
        if anchors is not None:
            cov = np.cov(anchors, rowvar=False)
            vals, vecs = np.linalg.eigh(cov)
            self.basis = (vecs * np.sqrt(np.clip(vals, 0, None))).T.astype(np.float32)

    def noise(self, n: int) -> F32:
        z = self.rng.standard_normal((n, DIM), dtype=np.float32)
        return z @ self.basis if self.anchors is not None else z

    def around(self, centres: F32, lo: float, hi: float) -> F32:
        """Unit rows at a cosine in [lo, hi] to each of ``centres`` (unit rows)."""
        g = self.noise(centres.shape[0])
        g -= np.sum(g * centres, axis=1, keepdims=True) * centres  # orthogonal to the centre
        g = unit(g)
        c = self.rng.uniform(lo, hi, size=(centres.shape[0], 1)).astype(np.float32)
        return unit(c * centres + np.sqrt(1 - c * c) * g)

    def entries(self, n: int) -> F32:
        if self.anchors is None:
            return unit(self.noise(n))
        pick = self.rng.integers(0, self.anchors.shape[0], size=n)
        return self.around(self.anchors[pick], 0.55, 0.90)


def make_data(size: int, queries: int, anchors: F32 | None, seed: int) -> tuple[F32, F32, NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    sampler = Sampler(anchors, rng)
    base = np.empty((size, DIM), dtype=np.float32)
    for start in range(0, size, 50_000):
        stop = min(size, start + 50_000)
        base[start:stop] = sampler.entries(stop - start)
    partners = rng.choice(size, size=queries, replace=False).astype(np.int64)
    qs = sampler.around(base[partners], 0.92, 0.98)
    return base, qs, partners


def exact_top1(base: F32, qs: F32) -> NDArray[np.int64]:
    best = np.full(qs.shape[0], -np.inf, dtype=np.float32)
    arg = np.zeros(qs.shape[0], dtype=np.int64)
    for start in range(0, base.shape[0], 50_000):
        sims = qs @ base[start : start + 50_000].T
        col = np.argmax(sims, axis=1)
        val = sims[np.arange(qs.shape[0]), col]
        better = val > best
        best[better] = val[better]
        arg[better] = col[better] + start
    return arg


# -- one build (child process) ---------------------------------------------------------------


def sentence_data(
    size: int, queries: int, sentences_file: str, seed: int
) -> tuple[F32, F32, NDArray[np.int64]]:
    from _sentence_vectors import SentenceVectors

    rng = np.random.default_rng(seed)
    sv = SentenceVectors.load(sentences_file, rng)
    base = sv.rows(size)
    rows = rng.choice(size, min(size, sv.sentences.shape[0]), replace=False)
    base[rows] = sv.sentences[: rows.shape[0]]  # the composed sentences are entries too
    partners = rng.choice(size, size=queries, replace=False).astype(np.int64)
    return base, sv.around(base[partners], 0.92, 0.98), partners


def child(args: argparse.Namespace) -> None:
    if args.data == "sentences":
        base, qs, partners = sentence_data(args.size, args.queries, args.sentences_file, args.seed)
    else:
        anchors = np.load(args.anchors_file) if args.data == "realistic" else None
        base, qs, partners = make_data(args.size, args.queries, anchors, seed=args.seed)
    truth = exact_top1(base, qs)
    m, efc = (int(x) for x in args.build.split(":"))
    before = rss_mb()
    index = HnswIndex(DIM, capacity=args.size + 1024, M=m, ef_construction=efc)
    t0 = time.perf_counter()
    for start in range(0, args.size, ADD_BATCH):
        stop = min(args.size, start + ADD_BATCH)
        index.add(list(range(start, stop)), base[start:stop])
        if stop % 100_000 == 0:  # progress, shown if the build is stopped by --timeout
            print(f"{stop} added in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    build_s = time.perf_counter() - t0
    index_mb = rss_mb() - before
    with tempfile.TemporaryDirectory() as d:
        file_mb = sum((Path(d) / f).stat().st_size for f in index.save(Path(d))) / 2**20
    auto_ef = index.ef_search
    rows = []
    for ef_text in args.efs.split(","):
        ef = auto_ef if ef_text == "auto" else int(ef_text)
        index.ef_search = ef
        found: list[int] = []
        times: list[float] = []
        for q in qs:
            t = time.perf_counter()
            hits = index.search(q, K_STORE)
            times.append((time.perf_counter() - t) * 1e6)
            found.append(hits[0][0] if hits else -1)
        top = np.asarray(found)
        rows.append(
            {
                "ef": ef_text if ef_text != "auto" else f"auto={auto_ef}",
                "recall_at_1": float(np.mean(top == truth)),
                "p50_us": pct(times, 0.5),
                "p99_us": pct(times, 0.99),
            }
        )
    print(
        json.dumps(
            {
                "build_s": build_s,
                "index_rss_mb": index_mb,
                "index_file_mb": file_mb,
                "queries": len(truth),
                "not_partner": int(np.sum(truth != partners)),
                "rows": rows,
            }
        )
    )


# -- driver ----------------------------------------------------------------------------------

COLUMNS = [("data", 9), ("size", 8), ("M:efC", 7), ("build_s", 8), ("idx_MB", 7), ("file_MB", 7)]
COLUMNS += [("ef", 10), ("recall@1", 8), ("p50_us", 7), ("p99_us", 7)]


def say(line: str) -> None:
    print(line, flush=True)


def run_build(args: argparse.Namespace, size: int, kind: str, build: str, anchors_file: Path) -> None:
    cmd = [
        sys.executable, __file__, "--child", "--size", str(size), "--build", build, "--data", kind,
        "--efs", args.efs, "--queries", str(args.queries), "--seed", str(args.seed),
        "--anchors-file", str(anchors_file), "--sentences-file", str(anchors_file.with_name("sentences.npz")),
    ]  # fmt: skip
    label = f"{kind:>9s} {size:8d} {build:>7s}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=True)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        progress = (err.strip().splitlines() or ["nothing added"])[-1]
        say(f"{label} stopped after {args.timeout:.0f} s, unfinished ({progress})")
        return
    except subprocess.CalledProcessError as exc:
        say(f"{label} failed: {exc.stderr[-400:]}")
        return
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    head = f"{label} {res['build_s']:8.1f} {res['index_rss_mb']:7.0f} {res['index_file_mb']:7.0f}"
    for row in res["rows"]:
        say(f"{head} {row['ef']:>10s} {row['recall_at_1']:8.4f} {row['p50_us']:7.0f} {row['p99_us']:7.0f}")
    say(f"#   {res['queries']} queries; for {res['not_partner']} the exact nearest was another entry")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--builds", default="16:100,32:200", help="M:ef_construction, comma-separated")
    ap.add_argument("--efs", default="64,128,256,auto")
    ap.add_argument("--data", default="sentences,uniform", help="sentences, realistic, uniform")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--anchors", type=int, default=3000)
    ap.add_argument("--pairs", type=Path, default=EVAL / "meancache_val.csv")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per build process")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--anchors-file", help=argparse.SUPPRESS)
    ap.add_argument("--sentences-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as d:
        anchors_file = Path(d) / "anchors.npy"
        kinds = args.data.split(",")
        if "realistic" in kinds:
            t0 = time.perf_counter()
            embed_anchors(args.pairs, args.anchors, anchors_file)
            say(f"# {args.anchors} anchors embedded in {time.perf_counter() - t0:.1f} s")
        if "sentences" in kinds:
            from _sentence_vectors import SentenceVectors

            from cacheback.adapters.embedders import MiniLMEmbedder

            t0 = time.perf_counter()
            sv = SentenceVectors(MiniLMEmbedder(keep_warm_ms=0), np.random.default_rng(args.seed))
            sv.save(Path(d) / "sentences.npz")
            say(f"# {len(sv.texts)} template sentences embedded in {time.perf_counter() - t0:.1f} s")
        say(" ".join(f"{name:>{width}s}" for name, width in COLUMNS))
        for size in args.sizes:
            for kind in kinds:
                for build in args.builds.split(","):
                    run_build(args, size, kind, build, anchors_file)


if __name__ == "__main__":
    main()
