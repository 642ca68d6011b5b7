"""The in-memory exact-hit map: bounded, generation-checked, drops deleted ids."""

from __future__ import annotations

from cacheback.engine._hotcache import HotCache
from cacheback.engine._types import CacheEntry


def entry(i: int, expires: float = 1e12) -> CacheEntry:
    return CacheEntry(i, "s", f"q{i}", f"a{i}", None, 0.0, expires, 0.0)


def test_lru_bound_and_expiry() -> None:
    hot = HotCache(2)
    hot.put("s", "h1", entry(1), hot.generation)
    hot.put("s", "h2", entry(2), hot.generation)
    assert hot.get("s", "h1", 0.0) is not None  # h1 now most recent
    hot.put("s", "h3", entry(3), hot.generation)
    assert hot.get("s", "h2", 0.0) is None and len(hot) == 2
    hot.put("s", "h4", entry(4, expires=5.0), hot.generation)
    assert hot.get("s", "h4", 10.0) is None


def test_generation_bump_and_stale_puts() -> None:
    hot = HotCache(10)
    gen = hot.generation
    hot.put("s", "h1", entry(1), gen)
    hot.bump()
    assert hot.get("s", "h1", 0.0) is None
    hot.put("s", "h2", entry(2), gen)  # recorded under the old generation: refused
    assert hot.get("s", "h2", 0.0) is None


def test_discard_ids_drops_only_those() -> None:
    hot = HotCache(10)
    for i in range(1, 5):
        hot.put("s", f"h{i}", entry(i), hot.generation)
    hot.discard_ids({2, 3, 99})
    assert [hot.get("s", f"h{i}", 0.0) is not None for i in range(1, 5)] == [True, False, False, True]
