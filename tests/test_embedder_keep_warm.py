"""Keep-warm: a tiny inference every few ms while recently active, parked when idle."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from cacheback import Settings
from cacheback.adapters.embedders import MiniLMEmbedder, load_default_embedder
from cacheback.adapters.embedders._warmth import KeepWarm, warm_action
from cacheback.core._errors import ConfigError

INTERVAL, LIMIT = 0.05, 10.0


def test_warm_action_ticks_only_when_recent_quiet_and_not_busy() -> None:
    # recently active, nothing ran within the interval: tick
    assert warm_action(100.0, 99.0, 99.9, 0, INTERVAL, LIMIT) == "tick"
    # something ran within the interval (a real embed or a tick): wait
    assert warm_action(100.0, 99.0, 99.97, 0, INTERVAL, LIMIT) == "wait"
    # a real embedding is running: never compete with it
    assert warm_action(100.0, 99.0, 99.0, 1, INTERVAL, LIMIT) == "wait"
    # idle past the limit: park, burning nothing
    assert warm_action(100.0, 90.0, 99.0, 0, INTERVAL, LIMIT) == "sleep"
    # a long-running real embedding is not mistaken for idleness
    assert warm_action(100.0, 80.0, 80.0, 1, INTERVAL, LIMIT) == "wait"


def _wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_keep_warm_ticks_while_active_then_parks() -> None:
    ticked = threading.Event()
    kw = KeepWarm(ticked.set, interval_s=0.01, idle_limit_s=0.3)
    assert kw.parked and kw.ticks == 0  # no thread before the first real embedding
    kw.begin()
    kw.end()
    assert ticked.wait(2.0)
    assert _wait_for(lambda: kw.parked)  # 0.3 s after the last real embedding
    parked_at = kw.ticks
    time.sleep(0.2)
    assert kw.ticks == parked_at  # parked: no more inference
    kw.begin()  # the next real embedding wakes it again
    kw.end()
    assert _wait_for(lambda: kw.ticks > parked_at)
    kw.close()


def test_keep_warm_never_ticks_during_a_real_embedding() -> None:
    kw = KeepWarm(lambda: None, interval_s=0.005, idle_limit_s=5.0)
    kw.begin()  # a long "real embedding" holds busy
    time.sleep(0.2)
    assert kw.ticks == 0
    kw.end()
    assert _wait_for(lambda: kw.ticks > 0)
    kw.close()


def test_a_failing_tick_stops_keep_warm_quietly() -> None:
    calls = []

    def tick() -> None:
        calls.append(1)
        raise RuntimeError("session gone")

    kw = KeepWarm(tick, interval_s=0.005, idle_limit_s=5.0)
    kw.begin()
    kw.end()
    assert _wait_for(lambda: len(calls) == 1)
    time.sleep(0.1)
    assert len(calls) == 1
    kw.close()


def _child_ticks(kw: KeepWarm, out: multiprocessing.queues.Queue[int]) -> None:  # type: ignore[name-defined]
    before = kw.ticks
    kw.begin()
    kw.end()
    _wait_for(lambda: kw.ticks > before, timeout=3.0)
    out.put(kw.ticks - before)
    kw.close()


def test_a_forked_child_starts_its_own_keep_warm_thread() -> None:
    kw = KeepWarm(lambda: None, interval_s=0.005, idle_limit_s=5.0)
    kw.begin()
    kw.end()
    assert _wait_for(lambda: kw.ticks > 0)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_ticks, args=(kw, out))
    child.start()
    try:
        assert out.get(timeout=10) > 0  # the parent's thread does not exist there: a new one ticks
    finally:
        child.join(timeout=10)
        kw.close()
    assert child.exitcode == 0


def test_the_real_embedder_keeps_its_session_warm_and_can_turn_it_off() -> None:
    emb = MiniLMEmbedder(keep_warm_ms=5, keep_warm_for_s=5)
    kw = emb.keep_warm
    assert kw is not None and emb.describe()["keep_warm"] is True
    assert kw.ticks == 0
    first = emb.embed(["How do I reverse a list in Python?"])
    assert _wait_for(lambda: kw.ticks >= 3)  # real three-token inferences on the session
    again = emb.embed(["How do I reverse a list in Python?"])
    assert (first == again).all()  # ticks leave nothing behind
    emb.close()
    off = MiniLMEmbedder(keep_warm_ms=0)
    assert off.keep_warm is None and off.describe()["keep_warm"] is False


def test_settings_carry_keep_warm_to_the_default_embedder() -> None:
    s = Settings()
    assert (s.embed_keep_warm_ms, s.embed_keep_warm_for_s) == (0.0, 10.0)  # off by default
    assert load_default_embedder(s).keep_warm is None  # type: ignore[union-attr]
    env = Settings.from_env({"CACHEBACK_EMBED_KEEP_WARM_MS": "50"})
    assert env.embed_keep_warm_ms == 50.0
    chosen = load_default_embedder(env)
    assert isinstance(chosen, MiniLMEmbedder) and chosen.keep_warm is not None
    with pytest.raises(ConfigError, match="keep_warm"):
        Settings(embed_keep_warm_ms=-1)
    with pytest.raises(ConfigError, match="keep_warm"):
        MiniLMEmbedder(keep_warm_for_s=-1)
