"""Exact ranking of a small scope's vectors, and index searches run as one batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ...core._types import Vector
from ._index_files import AnyIndex, matrix
from ._numpy_index import as_unit_rows

#: (unit query vector, how many to fetch, the scope filter or None) for one index search.
IndexRequest = tuple[Vector, int, Callable[[int], bool] | None]


class Ranking:
    """Rows ranked by cosine to one query, best first; materialised a window at a time (a
    search reads the first few and goes further only past deleted rows)."""

    __slots__ = ("_ids", "_order", "_sims")

    def __init__(self, ids: Sequence[int], sims: NDArray[np.float32]) -> None:
        self._ids = ids
        self._sims = sims
        # Stable: equal scores keep the rows' order (by id), so the result is deterministic.
        self._order = np.argsort(-sims, kind="stable")

    def __len__(self) -> int:
        return len(self._ids)

    def window(self, start: int, stop: int) -> list[tuple[int, float]]:
        ids, sims = self._ids, self._sims
        return [(ids[j], float(sims[j])) for j in self._order[start:stop].tolist()]


def rank_scopes(
    jobs: Sequence[tuple[Sequence[tuple[int, bytes]], Sequence[Vector]]], dim: int
) -> list[list[Ranking]]:
    """For each (scope's (id, vector blob) rows, unit queries): one ranking per query. The
    rows are decoded once for all of a scope's queries; blobs of another length are skipped."""
    nbytes = dim * 4
    out: list[list[Ranking]] = []
    for rows, queries in jobs:
        good = [r for r in rows if len(r[1]) == nbytes]
        if not good:
            out.append([Ranking([], np.zeros(0, dtype=np.float32)) for _ in queries])
            continue
        ids = [r[0] for r in good]
        mat = as_unit_rows(matrix([r[1] for r in good], dim), dim)
        # One product per query (not one matrix product for all): the same scores, to the
        # last bit, as a search made alone.
        out.append([Ranking(ids, mat @ q) for q in queries])
    return out


def search_each(index: AnyIndex, requests: Sequence[IndexRequest]) -> list[list[tuple[int, float]]]:
    """Several index searches in one call (one thread hop for a micro-batch of lookups)."""
    return [index.search(query, fetch, allowed) for query, fetch, allowed in requests]
