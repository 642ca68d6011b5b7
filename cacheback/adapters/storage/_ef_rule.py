"""The HNSW search breadth by index size, shared by both stores (each with its own steps)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def ef_for_size(size: int, steps: Sequence[tuple[int, int]]) -> int:
    """``ef`` for ``size`` entries: the first step's value up to its size, the last one's
    from its size on, and log-linear in ``size`` and ``ef`` between two steps."""
    (n0, ef0), *rest = steps
    if size <= n0:
        return ef0
    for n1, ef1 in rest:
        if size <= n1:
            t = math.log(size / n0) / math.log(n1 / n0)
            return round(ef0 * math.exp(t * math.log(ef1 / ef0)))
        n0, ef0 = n1, ef1
    return ef0
