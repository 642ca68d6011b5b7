"""Approximate inner-product search with hnswlib (the default index).

Vectors are L2-normalised on the way in and the space is "ip", so ``1 - distance`` is the
cosine similarity, exactly as in :class:`NumpyIndex`. hnswlib releases the GIL in its own
code, so searches and inserts run on worker threads; one lock serialises them because
``set_ef``, ``resize_index`` and ``save_index`` are not safe next to concurrent calls.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core._errors import ConfigError
from ...core._types import Vector
from ._ef_rule import ef_for_size
from ._numpy_index import as_unit_rows, as_unit_vector, dedupe_last

_FILE = "index.hnsw"
_LABELS = "index.hnsw.labels.npy"  # live labels: hnswlib keeps deleted ones in its label table
_PARALLEL_MIN = 256  # below this many new vectors, thread start-up costs more than it saves

M_DEFAULT = 16
EF_CONSTRUCTION_DEFAULT = 100
# The search breadth (ef) by index size, log-linear in between: the smallest that found the
# nearest entry of a planted near-duplicate (cosine >= 0.92) in >= 99 % of lookups among
# isotropic random vectors, the hardest case (loadtests/bench_ann_recall.py, M = 16: 0.998
# at 20k with 64, 0.995 at 100k with 256, 0.986 / 1.0 at 300k with 512 / 1024). MiniLM-like
# vectors need far less (1.0 at 100k with ef = 64). At 1M, on sentence-structured vectors
# (loadtests/bench_pg_scale.py --data sentences), 1024 found 0.994 and 512 0.991; random
# vectors at 1M were not measured (their build did not finish) and would need more.
# See docs/benchmarks.md#ann-recall.
EF_STEPS: tuple[tuple[int, int], ...] = ((20_000, 64), (100_000, 256), (300_000, 640), (1_000_000, 1024))


def auto_ef(size: int) -> int:
    """ef_search for an index of ``size`` vectors: EF_STEPS, interpolated on log(size)."""
    return ef_for_size(size, EF_STEPS)


def _import_hnswlib() -> Any:
    try:
        return importlib.import_module("hnswlib")
    except ImportError:
        return None


_hnswlib: Any = _import_hnswlib()


def hnsw_available() -> bool:
    return _hnswlib is not None


class HnswIndex:
    """hnswlib HNSW graph with deleted slots reused on insert.

    ``ef_search`` None (the default) adapts the search breadth to the index size
    (:func:`auto_ef`); a number fixes it. A loaded index keeps the M and ef_construction
    it was built with (hnswlib stores them in the file).
    """

    kind: ClassVar[str] = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        capacity: int = 1024,
        M: int = M_DEFAULT,
        ef_construction: int = EF_CONSTRUCTION_DEFAULT,
        ef_search: int | None = None,
    ) -> None:
        if _hnswlib is None:
            raise ConfigError("hnswlib is not installed; use index='numpy'")
        if dim < 1:
            raise ConfigError("dim must be at least 1")
        index = _hnswlib.Index(space="ip", dim=dim)
        index.init_index(
            max_elements=max(16, capacity),
            M=M,
            ef_construction=ef_construction,
            allow_replace_deleted=True,  # evictions would otherwise grow the graph forever
        )
        self._setup(index, dim, ef_search, live=set(), max_label=-1)

    def _setup(self, index: Any, dim: int, ef_search: int | None, *, live: set[int], max_label: int) -> None:
        self._index = index
        self._dim = dim
        self._ef = None if ef_search is None else max(1, ef_search)
        self._lock = threading.Lock()
        self._live = live
        # Labels above this were never in the graph, so they need no "was it deleted?" probe.
        self._max_label = max_label

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ef_search(self) -> int:
        """The search breadth in use now (adapted to the size unless fixed)."""
        return auto_ef(len(self._live)) if self._ef is None else self._ef

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        self._ef = None if value is None else max(1, int(value))

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, label: object) -> bool:
        return label in self._live

    def add(self, ids: Sequence[int], vectors: Vector) -> None:
        mat = as_unit_rows(vectors, self._dim)
        labels, rows = dedupe_last(ids, mat.shape[0])
        with self._lock:
            update: list[tuple[int, int]] = []
            fresh: list[tuple[int, int]] = []
            for label, row in zip(labels, rows, strict=True):
                if label in self._live or (label <= self._max_label and self._revive(label)):
                    update.append((label, row))
                else:
                    fresh.append((label, row))
            if update:
                # An existing label is updated in place (a "replace" insert would duplicate it).
                lab, src = zip(*update, strict=True)
                self._index.add_items(mat[list(src)], list(lab), num_threads=1)
            if fresh:
                lab, src = zip(*fresh, strict=True)
                self._reserve(len(fresh))
                threads = -1 if len(fresh) >= _PARALLEL_MIN else 1
                self._index.add_items(mat[list(src)], list(lab), num_threads=threads, replace_deleted=True)
                self._max_label = max(self._max_label, *lab)
            self._live.update(labels)

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            for label in ids:
                label = int(label)
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)

    def search(
        self, vector: Vector, k: int, allowed: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        q = as_unit_vector(vector, self._dim)
        with self._lock:
            kk = min(k, len(self._live))
            while kk > 0:
                self._index.set_ef(max(self.ef_search, kk))
                try:
                    labels, dists = self._index.knn_query(q, k=kk, num_threads=1, filter=allowed)
                except RuntimeError:
                    # hnswlib raises when it finds fewer than k allowed labels: ask for fewer.
                    kk //= 2
                    continue
                # Python ints and floats at once (tolist()), not one NumPy scalar per hit.
                return [
                    (label, 1.0 - dist)
                    for label, dist in zip(labels[0].tolist(), dists[0].tolist(), strict=True)
                ]
        return []

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kind": self.kind,
                "dim": self._dim,
                "size": len(self._live),
                "capacity": int(self._index.get_max_elements()),
                "slots_used": int(self._index.get_current_count()),
                "M": int(self._index.M),
                "ef_construction": int(self._index.ef_construction),
                "ef_search": self.ef_search,
                "ef_search_auto": self._ef is None,
            }

    def save(self, directory: Path) -> list[str]:
        """Write the graph and the live labels into ``directory``; returns the file names."""
        with self._lock:
            self._index.save_index(str(directory / _FILE))
            live = np.fromiter(self._live, dtype=np.int64, count=len(self._live))
        np.save(directory / _LABELS, live, allow_pickle=False)
        return [_FILE, _LABELS]

    @classmethod
    def load(cls, directory: Path, dim: int, *, ef_search: int | None = None) -> HnswIndex:
        if _hnswlib is None:
            raise ConfigError("hnswlib is not installed; use index='numpy'")
        index = _hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(directory / _FILE), max_elements=0, allow_replace_deleted=True)
        live = np.load(directory / _LABELS, allow_pickle=False)
        known = index.get_ids_list()
        if live.ndim != 1 or live.shape[0] > len(known):
            raise ValueError("index labels do not match the index file")
        obj = cls.__new__(cls)
        obj._setup(index, dim, ef_search, live=set(live.tolist()), max_label=max(known, default=-1))
        if len(obj._live) != live.shape[0]:
            raise ValueError("index labels file holds duplicates")
        return obj

    def _revive(self, label: int) -> bool:
        """Undelete a label hnswlib still knows, so re-adding it updates its old slot."""
        try:
            self._index.unmark_deleted(label)
        except RuntimeError:  # not in the graph (its slot was reused): a fresh insert
            return False
        return True

    def _reserve(self, fresh: int) -> None:
        used = int(self._index.get_current_count())
        vacant = used - len(self._live)  # deleted slots that replace_deleted will reuse
        needed = used + max(0, fresh - vacant)
        cap = int(self._index.get_max_elements())
        if needed > cap:
            self._index.resize_index(max(needed, cap * 3 // 2, 1024))
