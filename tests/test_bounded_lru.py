"""The bounded LRU behind the memos of repeated requests."""

from __future__ import annotations

from cacheback.adapters.providers._bounded_lru import BoundedLru


def test_the_least_recently_used_go_first_by_count_and_by_size() -> None:
    lru: BoundedLru[str] = BoundedLru(max_items=2, max_size=10)
    lru.put("a", "A", 4)
    lru.put("b", "B", 4)
    assert lru.get("a") == "A"  # now b is the least recently used
    lru.put("c", "C", 1)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == ("A", None, "C")
    lru.put("d", "D", 9)  # 4 + 1 + 9 is over the size: a, the least recently used, goes
    assert (len(lru), lru.get("a"), lru.get("c"), lru.get("d")) == (2, None, "C", "D")
    lru.put("e", "E", 1)  # 1 + 9 + 1: c, the least recently used, goes; d and e fit
    assert (len(lru), lru.get("c"), lru.get("d"), lru.get("e")) == (2, None, "D", "E")


def test_a_value_larger_than_the_bound_or_a_kept_key_changes_nothing() -> None:
    lru: BoundedLru[str] = BoundedLru(max_items=4, max_size=10)
    lru.put("a", "A", 4)
    lru.put("big", "BIG", 11)
    lru.put("a", "other", 1)
    assert (len(lru), lru.get("big"), lru.get("a")) == (1, None, "A")
