"""The in-memory hit map: bounded, generation-checked, remembers how each entry matched, drops deleted ids."""

from __future__ import annotations

import gc

from cacheback.core._hotcache import HotCache
from cacheback.core._types import CacheEntry, LookupRequest, Tier


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


def test_remembers_how_an_entry_matched() -> None:
    hot = HotCache(10)
    hot.put("s", "own", entry(1), hot.generation)
    hot.put("s", "para", entry(1), hot.generation, tier=Tier.VERBATIM, similarity=0.95, guard_reasons=("x",))
    own, para = hot.get("s", "own", 0.0), hot.get("s", "para", 0.0)
    assert own is not None and (own.tier, own.similarity) == (Tier.EXACT, 1.0)
    assert para is not None and (para.tier, para.similarity) == (Tier.VERBATIM, 0.95)
    assert para.guard_reasons == ("x",) and para.entry.id == 1
    assert not para.serves(LookupRequest("q", semantic=False)) and para.serves(LookupRequest("q"))
    assert own.serves(LookupRequest("q", semantic=False))


def test_discard_ids_drops_every_question_an_entry_answered() -> None:
    hot = HotCache(10)
    hot.put("s", "own", entry(1), hot.generation)
    hot.put("s", "para", entry(1), hot.generation, tier=Tier.VERBATIM, similarity=0.95)
    hot.put("s", "other", entry(2), hot.generation)
    hot.discard_ids({1})
    assert hot.get("s", "own", 0.0) is None and hot.get("s", "para", 0.0) is None
    assert hot.get("s", "other", 0.0) is not None and len(hot) == 1


def test_one_entry_under_several_keys_is_dropped_from_all_of_them() -> None:
    hot = HotCache(10)
    e = entry(7)
    for h in ("h1", "h2", "h3"):  # its own text and two paraphrases it answered
        hot.put("s", h, e, hot.generation, tier=Tier.VERBATIM if h != "h1" else Tier.EXACT)
    hot.put("s", "h2", entry(8), hot.generation)  # h2 now answered by another entry
    hot.put("s", "h9", entry(9), hot.generation)
    hot.discard_ids({7})
    assert [hot.get("s", h, 0.0) is not None for h in ("h1", "h2", "h3", "h9")] == [False, True, False, True]
    hot.discard_ids({8})
    hot.put("s", "h1", e, hot.generation)  # back to one key for entry 7
    hot.discard_ids({7})
    assert [hot.get("s", h, 0.0) is not None for h in ("h1", "h2", "h9")] == [False, False, True]


def test_an_item_adds_one_object_for_the_garbage_collector() -> None:
    # The map holds up to 50k items by default; every full collection walks what it tracks.
    hot = HotCache(5_000)
    entries = [entry(i) for i in range(1, 5_001)]
    gc.collect()
    before = len(gc.get_objects())
    for i, e in enumerate(entries):
        hot.put("s", f"h{i}", e, hot.generation)
    gc.collect()  # the key tuples of strings are untracked by a collection
    assert len(gc.get_objects()) - before <= 5_000 + 100  # the Remembered decision alone
