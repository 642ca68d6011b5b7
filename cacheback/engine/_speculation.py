"""Speculative upstream calls (``speculative_upstream``): the engine's side.

The engine asks its embedder for a miss predictor when the setting is on, teaches it
every question it stores, and, once open, the questions already stored. The decisions
are pure (``core/_speculation.py``); the sending and taking back is the embed batcher's
and the early call's (``stages/embed_batcher.py``, ``core/_early.py``).
"""

from __future__ import annotations

import anyio.to_thread

from cacheback._logging import get_logger

from ..core._ports import Embedder, Maintenance, MissPredictor, PredictsMisses
from ..core._settings import Settings

log = get_logger("cacheback.engine")

#: Stored questions taught to the predictor when the engine opens, at most (the rest of a
#: larger store only makes clear misses rarer: scopes that big are never probed anyway).
PRELOAD_LIMIT = 200_000
_PAGE = 1_000


async def build_predictor(settings: Settings, embedder: Embedder | None) -> MissPredictor | None:
    """The miss predictor, when ``speculative_upstream`` is on and the embedder has one."""
    matching = settings.matching
    if not matching.speculative_upstream or embedder is None:
        return None
    if not isinstance(embedder, PredictsMisses):
        log.warning("speculative_upstream: the embedder has no miss predictor", embedder=embedder.name)
        return None
    return await anyio.to_thread.run_sync(embedder.miss_predictor, matching.speculation_margin)


async def teach_stored(predictor: MissPredictor, maintenance: Maintenance, limit: int = PRELOAD_LIMIT) -> int:
    """Teach the predictor the questions already stored (page by page, in the background);
    how many. A question it does not know yet can only make it send a call that a hit
    then takes back, never change an answer."""
    taught = 0
    before: int | None = None  # keyset paging: each page as cheap as the first
    while taught < limit:
        page = await maintenance.list(limit=min(_PAGE, limit - taught), before=before)
        for entry in page:
            predictor.learn(entry.scope, entry.query)
        taught += len(page)
        if len(page) < _PAGE:
            break
        before = page[-1].id
    return taught

