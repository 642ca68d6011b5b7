"""Where one question's embedding goes: onnxruntime's own profiler by op type, and the Python around it.

    python loadtests/profile_embed.py [--repeat 60] [--gap 0.3] [--threads 2] [--model FILE]

Loads the default embedder (the int8 model file it keeps), then opens a second session on
the same file with onnxruntime's profiler switched on and the embedder's own session
options. Three cases: a lone short question warm, the same after ``--gap`` seconds idle,
and a batch of 32 evaluation questions. For each it prints the time per op type (summed
over the op's nodes, median over repeats) and the Python steps around ``session.run``
(tokenize, input building, run, pooling, normalise). ``--model`` profiles another ONNX
file with the same inputs instead (for example a rewritten candidate). Asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.adapters.embedders._minilm import encode, l2_normalise, session_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed_compute import questions

LONE = "How do I reverse a list in Python without copying it?"


def feeds_for(session: Any, encodings: list[Any]) -> tuple[dict[str, Any], np.ndarray]:
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    columns = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}
    feeds = {i.name: columns[i.name].astype(types[i.type]) for i in session.get_inputs()}
    return feeds, mask


def steps(session: Any, tokenizer: Any, texts: list[str]) -> dict[str, float]:
    """Milliseconds of each Python step of one embed() of ``texts``."""
    t0 = time.perf_counter()
    encodings = encode(tokenizer, texts, 256)
    t1 = time.perf_counter()
    feeds, mask = feeds_for(session, encodings)
    t2 = time.perf_counter()
    hidden = session.run(None, feeds)[0]
    t3 = time.perf_counter()
    if hidden.ndim == 3:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    else:
        pooled = hidden
    t4 = time.perf_counter()
    l2_normalise(pooled)
    t5 = time.perf_counter()
    return {
        "tokenize": (t1 - t0) * 1e3,
        "inputs": (t2 - t1) * 1e3,
        "run": (t3 - t2) * 1e3,
        "pool": (t4 - t3) * 1e3,
        "normalise": (t5 - t4) * 1e3,
    }


def by_op(profile: Path, runs: int) -> dict[str, float]:
    """Milliseconds per op type per run over the last ``runs`` runs, from onnxruntime's
    chrome-trace JSON (the warm-up runs before them are left out)."""
    events = json.loads(profile.read_text())
    windows = sorted((ev["ts"], ev["ts"] + ev["dur"]) for ev in events if ev.get("name") == "model_run")
    start = windows[-runs][0]
    total: collections.Counter[str] = collections.Counter()
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time") and ev["ts"] >= start:
            total[ev["args"]["op_name"]] += ev["dur"] / 1000
    return {op: ms / runs for op, ms in total.items()}


def case(model: str, threads: int, tokenizer: Any, texts: list[str], repeat: int, gap: float) -> None:
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "cacheback-profile")
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        steps(session, tokenizer, texts)
    timed: list[dict[str, float]] = []
    for _ in range(repeat):
        if gap:
            time.sleep(gap)
        timed.append(steps(session, tokenizer, texts))
    trace = Path(session.end_profiling())
    ops = by_op(trace, repeat)
    trace.unlink()
    label = f"{len(texts)} question(s), {'after ' + str(gap) + ' s idle' if gap else 'warm'}"
    print(f"\n== {label}, {threads} thread(s)")
    for key in timed[0]:
        print(f"python {key:12s} {statistics.median(t[key] for t in timed):8.3f} ms")
    run = statistics.median(t["run"] for t in timed)
    kernels = sum(ops.values())
    print(f"kernels summed, mean {kernels:8.3f} ms; session.run p50 {run:.3f} ms")
    for op, ms in sorted(ops.items(), key=lambda kv: -kv[1]):
        if ms >= 0.005:
            print(f"  op {op:28s} {ms:8.3f} ms  {100 * ms / kernels:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=60)
    ap.add_argument("--gap", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    emb = MiniLMEmbedder()
    emb.load()
    model = args.model or emb.describe()["int8_model_file"]
    tokenizer = emb._tokenizer
    assert tokenizer is not None  # loaded above
    print(f"model {Path(model).name}; lone question {len(encode(tokenizer, [LONE], 256)[0].ids)} tokens")
    batch = questions(32)
    case(model, args.threads, tokenizer, [LONE], args.repeat, 0.0)
    case(model, args.threads, tokenizer, [LONE], max(10, args.repeat // 3), args.gap)
    case(model, args.threads, tokenizer, batch, max(10, args.repeat // 3), 0.0)


if __name__ == "__main__":
    main()
