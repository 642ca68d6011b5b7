"""A cheap first-stage test: can anything in this scope reach the similarity threshold?

Most lookups miss, and a miss pays a full MiniLM inference before its upstream call.
The probe gives each text a static vector: the sum of per-token rows of a table
distilled from the shipped MiniLM itself (``scripts/build_miss_probe.py``: rows fitted
by ridge regression so that the summed rows follow the model's sentence vectors on
unlabelled text from installed Python packages, starting from each token's own output
through the model), in the model's top principal directions. Computing one costs a
tokenisation and a row sum, no inference; a scope's probe search is one matrix product
over the probe vectors kept with its entries (:class:`ScopeProbes`).

:func:`can_skip` is the decision: skip inference (go upstream at once, embed for storage
afterwards) only when no entry's probe similarity reaches ``threshold - margin``. How
much it skips for how many lost hits is measured by ``loadtests/bench_miss_probe.py``
and written in docs/benchmarks.md. It never decides an answer: with the setting
``speculative_upstream`` (off by default) a clear miss's upstream call is sent before the
question embeds, the lookup still runs in full, and a hit it finds takes the call back
(:class:`ProbePredictor`; docs/engine.md, "Speculative upstream calls").
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import EmbedderError
from cacheback.core._types import match_text

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_MARGIN",
    "TABLE_FILE",
    "MissProbe",
    "ProbePredictor",
    "ScopeProbes",
    "can_skip",
    "clear_miss",
]

TABLE_FILE = Path(__file__).with_name("_miss_probe_table.npz")

#: threshold - margin is the probe similarity below which a scope is a sure miss. The
#: table file carries the margin its build calibrated (at threshold 0.92, on held-out
#: pairs the build script makes: sentences and light edits of them, 99.9 % of the pairs
#: the model puts at >= 0.92 kept above the cut); this is the fallback.
DEFAULT_MARGIN = 0.30


def can_skip(probe_sims: NDArray[np.float32] | Sequence[float], threshold: float, margin: float) -> bool:
    """True when no probe similarity reaches ``threshold - margin``: the model cannot find
    a hit here (up to the calibrated loss), so the lookup may go upstream without
    inference. An empty scope is always a miss."""
    sims = np.asarray(probe_sims, dtype=np.float32)
    if sims.size == 0:
        return True
    return bool(float(sims.max()) < threshold - margin)


class MissProbe:
    """Static probe vectors from the shipped table and the model's tokenizer."""

    def __init__(
        self,
        table: NDArray[np.float32],
        mean: NDArray[np.float32],
        tokenizer: Tokenizer,
        *,
        margin: float = DEFAULT_MARGIN,
        max_length: int = 256,
    ) -> None:
        if table.ndim != 2 or table.shape[0] < tokenizer.get_vocab_size():
            raise EmbedderError(
                f"probe table of shape {table.shape} does not cover the tokenizer's"
                f" {tokenizer.get_vocab_size()} tokens"
            )
        if mean.shape != (table.shape[1],):
            raise EmbedderError(f"probe table mean of shape {mean.shape}, expected ({table.shape[1]},)")
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self._mean = mean.astype(np.float32)
        self.margin = margin  # calibrated by the build script at threshold 0.92
        self._tokenizer = tokenizer
        self._max_length = max_length

    @classmethod
    def load(cls, tokenizer: Tokenizer, path: Path = TABLE_FILE) -> MissProbe:
        try:
            with np.load(path) as data:
                table = data["rows"].astype(np.float32) * data["scale"].astype(np.float32)[:, None]
                mean, margin = data["mean"].astype(np.float32), float(data["margin"])
        except (OSError, KeyError, ValueError) as exc:
            raise EmbedderError(f"could not read the miss-probe table {path}: {exc}") from exc
        return cls(table, mean, tokenizer, margin=margin)

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def vectors(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Unit probe vectors, one row per text: the mean of its tokens' rows less the
        corpus mean (the direction every text shares says nothing about a match)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self._tokenizer.encode(text).ids[: self._max_length]
            out[row] = self._table[ids].mean(axis=0) - self._mean
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: NDArray[np.float32] = out / np.maximum(norms, 1e-12)
        return result


class ScopeProbes:
    """Each scope's entries' probe vectors, kept in memory beside the store.

    Filled as entries are stored (and from the stored texts when the engine opens:
    a probe vector costs no inference, so nothing needs persisting); a lookup's probe
    search is one matrix product over its scope's rows. Rows grow by doubling, so adding
    one costs amortised constant time. Thread-safe.
    """

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._lock = threading.Lock()
        self._rows: dict[str, NDArray[np.float32]] = {}  # capacity rows; the first n used
        self._ids: dict[str, list[int]] = {}

    def add(self, scope: str, entry_ids: Sequence[int], vectors: NDArray[np.float32]) -> None:
        if vectors.shape != (len(entry_ids), self._dim):
            raise ValueError(f"expected {len(entry_ids)} probe vectors of {self._dim} dims: {vectors.shape}")
        with self._lock:
            ids = self._ids.setdefault(scope, [])
            rows = self._rows.get(scope)
            used, need = len(ids), len(ids) + len(entry_ids)
            if rows is None or rows.shape[0] < need:
                grown = np.empty((max(need, 2 * used, 16), self._dim), dtype=np.float32)
                if rows is not None:
                    grown[:used] = rows[:used]
                rows = self._rows[scope] = grown
            rows[used:need] = vectors
            ids.extend(int(i) for i in entry_ids)

    def remove(self, entry_ids: Iterable[int]) -> int:
        """Drop entries (evicted, expired, deleted) from every scope; how many were found."""
        gone = set(entry_ids)
        removed = 0
        with self._lock:
            for scope in list(self._ids):
                ids = self._ids[scope]
                keep = [k for k, i in enumerate(ids) if i not in gone]
                if len(keep) == len(ids):
                    continue
                removed += len(ids) - len(keep)
                if keep:
                    self._rows[scope] = self._rows[scope][keep]
                    self._ids[scope] = [ids[k] for k in keep]
                else:
                    del self._rows[scope], self._ids[scope]
        return removed

    def size(self, scope: str) -> int:
        with self._lock:
            return len(self._ids.get(scope, ()))

    def similarities(self, scope: str, probe: NDArray[np.float32]) -> NDArray[np.float32]:
        """The probe similarity of ``probe`` (one unit vector) to every entry of ``scope``."""
        with self._lock:
            rows = self._rows.get(scope)
            used = len(self._ids.get(scope, ()))
            rows = None if rows is None else rows[:used]  # rows only ever appended past `used`
        if rows is None:
            return np.zeros(0, dtype=np.float32)
        sims: NDArray[np.float32] = rows @ probe.astype(np.float32, copy=False)
        return sims

    def __len__(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._ids.values())


#: Scopes with more entries than this are never called a clear miss: the probe's search
#: would cost about what the inference it saves does, and among that many entries some
#: probe similarity nearly always reaches the cut anyway.
MAX_SCOPE_ROWS = 20_000
#: Only the start of a long question is probed (the cost must not grow with the input).
MAX_PROBE_CHARS = 2_000


class ProbePredictor:
    """The engine's miss predictor (``core._ports.MissPredictor``) over the static probe:
    a question is a clear miss when no entry of its scope reaches ``floor - margin``."""

    def __init__(
        self, probe: MissProbe, *, margin: float | None = None, max_scope: int = MAX_SCOPE_ROWS
    ) -> None:
        self._probe = probe
        self.margin = probe.margin if margin is None else margin
        self._max_scope = max_scope
        self._scopes = ScopeProbes(probe.dim)
        self._learned: deque[tuple[str, str]] = deque()  # appended on any thread

    def learn(self, scope: str, text: str) -> None:
        """A stored question, as stored: its match text is derived (and probed) on the next
        worker call, never on the caller's thread."""
        self._learned.append((scope, text[:MAX_PROBE_CHARS]))

    def known(self) -> int:
        """Questions in the table (those learned but not yet probed excluded)."""
        return len(self._scopes)

    def _absorb(self) -> None:
        by_scope: dict[str, list[str]] = {}
        while True:
            try:  # with several embedding threads, another may take the last one first
                scope, text = self._learned.popleft()
            except IndexError:
                break
            by_scope.setdefault(scope, []).append(match_text(text))
        for scope, texts in by_scope.items():
            self._scopes.add(scope, [0] * len(texts), self._probe.vectors(texts))

    def clear_misses(self, scopes: Sequence[str], texts: Sequence[str], threshold: float) -> list[bool]:
        self._absorb()
        vectors = self._probe.vectors([text[:MAX_PROBE_CHARS] for text in texts])
        clear = []
        for scope, vector in zip(scopes, vectors, strict=True):
            if self._scopes.size(scope) > self._max_scope:
                clear.append(False)
                continue
            clear.append(can_skip(self._scopes.similarities(scope, vector), threshold, self.margin))
        return clear


def clear_miss(probe: MissProbe, scopes: ScopeProbes, scope: str, text: str, threshold: float) -> bool:
    """The engine's hook, before inference: True when ``text`` cannot reach ``threshold``
    against any entry of ``scope``, so the lookup goes upstream at once and the text is
    embedded for storage after the answer (setting ``miss_probe``)."""
    return can_skip(scopes.similarities(scope, probe.vectors([text])[0]), threshold, probe.margin)
