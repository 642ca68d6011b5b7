"""Brute-force inner-product index: the fallback when hnswlib is missing or index="numpy".

Same contract as :class:`HnswIndex` (labels, cosine similarity on L2-normalised vectors,
thread-safe, idempotent add/remove, save/load into a directory), exact instead of approximate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ...core._errors import ConfigError
from ...core._types import Vector

IdArray = NDArray[np.int64]

_FILE = "index.npz"


def as_unit_rows(vectors: Vector | Sequence[float], dim: int) -> Vector:
    """A C-contiguous float32 (n, dim) copy with every non-zero row scaled to unit length."""
    mat = np.array(vectors, dtype=np.float32, ndmin=2, copy=True)
    if mat.ndim != 2 or mat.shape[1] != dim:
        raise ConfigError(f"expected vectors of dimension {dim}, got shape {mat.shape}")
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    # A zero vector stays zero (similarity 0 with everything) instead of becoming NaN.
    np.divide(mat, norms, out=mat, where=norms > 0)
    return mat


def as_unit_vector(vector: Vector | Sequence[float], dim: int) -> Vector:
    """One query vector as a unit float32 row of shape (dim,)."""
    flat = np.asarray(vector, dtype=np.float32).reshape(-1)
    row: Vector = as_unit_rows(flat, dim)[0]
    return row


def dedupe_last(ids: Sequence[int], count: int) -> tuple[list[int], list[int]]:
    """Labels and their row numbers with later duplicates winning (like repeated upserts)."""
    if len(ids) != count:
        raise ConfigError(f"{len(ids)} ids for {count} vectors")
    last = {int(label): row for row, label in enumerate(ids)}
    return list(last), list(last.values())


class NumpyIndex:
    """Exact search over a float32 matrix that grows by doubling; removal swaps in the last row."""

    kind: ClassVar[str] = "numpy"

    def __init__(self, dim: int, *, capacity: int = 1024) -> None:
        if dim < 1:
            raise ConfigError("dim must be at least 1")
        self._dim = dim
        self._lock = threading.Lock()
        cap = max(16, capacity)
        self._vecs: Vector = np.empty((cap, dim), dtype=np.float32)
        self._ids: IdArray = np.empty(cap, dtype=np.int64)
        self._n = 0
        self._row: dict[int, int] = {}

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._n

    def __contains__(self, label: object) -> bool:
        return label in self._row

    def add(self, ids: Sequence[int], vectors: Vector) -> None:
        mat = as_unit_rows(vectors, self._dim)
        labels, rows = dedupe_last(ids, mat.shape[0])
        with self._lock:
            known = self._row
            old = [(known[label], src) for label, src in zip(labels, rows, strict=True) if label in known]
            if old:  # re-adding a label overwrites its vector, like hnswlib does
                dst, src_rows = zip(*old, strict=True)
                self._vecs[list(dst)] = mat[list(src_rows)]
            fresh = [(label, src) for label, src in zip(labels, rows, strict=True) if label not in known]
            if fresh:
                new_labels, new_src = zip(*fresh, strict=True)
                start, m = self._n, len(fresh)
                self._reserve(start + m)
                self._vecs[start : start + m] = mat[list(new_src)]
                self._ids[start : start + m] = new_labels
                known.update(zip(new_labels, range(start, start + m), strict=True))
                self._n = start + m

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            for label in ids:
                row = self._row.pop(int(label), None)
                if row is None:
                    continue
                last = self._n - 1
                if row != last:
                    moved = int(self._ids[last])
                    self._vecs[row] = self._vecs[last]
                    self._ids[row] = moved
                    self._row[moved] = row
                self._n = last

    def search(
        self, vector: Vector, k: int, allowed: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        q = as_unit_vector(vector, self._dim)
        with self._lock:
            n = self._n
            if n == 0 or k <= 0:
                return []
            scores = self._vecs[:n] @ q
            labels = self._ids[:n].copy()
        return _top_k(scores, labels, k, allowed)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self._dim, "size": self._n, "capacity": len(self._ids)}

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory``; returns the file names written."""
        with self._lock:
            n = self._n
            with (directory / _FILE).open("wb") as fh:
                np.savez(fh, ids=self._ids[:n], vectors=self._vecs[:n])
        return [_FILE]

    @classmethod
    def load(cls, directory: Path, dim: int) -> NumpyIndex:
        with np.load(directory / _FILE, allow_pickle=False) as data:
            ids = np.asarray(data["ids"], dtype=np.int64)
            vecs = np.asarray(data["vectors"], dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != dim or ids.shape != (vecs.shape[0],):
            raise ValueError(f"index file holds shape {vecs.shape}, expected (n, {dim})")
        index = cls(dim, capacity=16)
        n = ids.shape[0]
        # Adopt the loaded arrays as they are (no second copy at open); growth reallocates.
        index._vecs = np.ascontiguousarray(vecs)
        index._ids = np.ascontiguousarray(ids)
        index._n = n
        index._row = dict(zip(ids.tolist(), range(n), strict=True))
        if len(index._row) != n:
            raise ValueError("index file holds duplicate labels")
        return index

    def _reserve(self, needed: int) -> None:
        cap = len(self._ids)
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        vecs = np.empty((new_cap, self._dim), dtype=np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        ids = np.empty(new_cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._vecs, self._ids = vecs, ids


def _top_k(
    scores: NDArray[np.float32],
    labels: IdArray,
    k: int,
    allowed: Callable[[int], bool] | None,
) -> list[tuple[int, float]]:
    n = scores.shape[0]
    if allowed is None:
        kk = min(k, n)
        part = np.argpartition(-scores, kk - 1)[:kk] if kk < n else np.arange(n)
        order = part[np.argsort(-scores[part], kind="stable")]
        return [(int(labels[i]), float(scores[i])) for i in order]
    # Widen the window until k allowed labels are found: the filter is only called on the
    # best-scoring rows, not on every row.
    m = min(n, max(4 * k, 64))
    while True:
        part = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
        order = part[np.argsort(-scores[part], kind="stable")]
        out: list[tuple[int, float]] = []
        for i in order:
            label = int(labels[i])
            if allowed(label):
                out.append((label, float(scores[i])))
                if len(out) == k:
                    return out
        if m == n:
            return out
        m = min(n, m * 8)
