"""What the drop-in clients accept on top of the SDK's own arguments, and what their
construction starts: every engine setting is a client argument; the model starts loading
in the background (real SDK clients against the fake provider)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from _client_helpers import anthropic_args, openai_args, user
from fake_provider import FakeProvider

from cacheback import (
    AsyncCachedAnthropic,
    AsyncCachedOpenAI,
    CachedAnthropic,
    CachedOpenAI,
    ConfigError,
    Settings,
)

pytestmark = pytest.mark.anyio


def _defaults() -> dict[str, Any]:
    """Every Settings field at its default (``embedder`` is the client's own argument)."""
    out: dict[str, Any] = {}
    for f in Settings.setting_fields():
        if f.name in ("embedder", "cache_dir"):
            continue
        out[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    return out


def test_no_setting_shadows_an_sdk_argument() -> None:
    names = set(Settings.names())
    for sdk in (openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic, anthropic.AsyncAnthropic):
        assert not names & set(inspect.signature(sdk.__init__).parameters), sdk


def test_every_setting_is_a_client_argument(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    synthesis = {
        "synthesis_base_url": "http://127.0.0.1:9/v1",
        "synthesis_model": "small-model",
        "synthesis_api_key": "sk-synth",
        "synthesis_timeout_s": 3.0,
        "similarity_threshold": 0.9,
    }
    given = {**_defaults(), **synthesis}
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder, **given)) as client:
        settings = client._cacheback.cache.settings
        assert settings == Settings(cache_dir=cache_dir, **given)
        reply = client.chat.completions.create(model="gpt-4o", messages=user("Name a prime number"))
        assert reply.choices[0].message.content
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder, synthesis_model="m2")) as claude:
        assert claude._cacheback.cache.settings.synthesis_model == "m2"
    aoai = AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder, synthesis_top_k=2))
    assert aoai._cacheback.cache.settings.synthesis_top_k == 2
    aclaude = AsyncCachedAnthropic(**anthropic_args(fake, cache_dir, embedder, negative_threshold=0.7))
    assert aclaude._cacheback.cache.settings.negative_threshold == 0.7


def test_settings_given_twice_or_unknown_are_clear_errors(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    twice = {"similarity_threshold": 0.9, "cache_settings": {"similarity_threshold": 0.8}}
    with pytest.raises(ConfigError, match="similarity_threshold given both"):
        CachedOpenAI(**openai_args(fake, cache_dir, embedder, **twice))
    with pytest.raises(ConfigError, match=r"unknown cache settings: no_such_setting .*cache_settings"):
        CachedOpenAI(**openai_args(fake, cache_dir, embedder, cache_settings={"no_such_setting": 1}))
    with pytest.raises(ConfigError, match="synthesis_timeout_s"):  # values are still checked
        CachedOpenAI(**openai_args(fake, cache_dir, embedder, synthesis_timeout_s=0))


BACKGROUND_LOAD = """
import json, sys, threading, time
from cacheback import CachedOpenAI

base, cache_dir = sys.argv[1:3]
t0 = time.perf_counter()
client = CachedOpenAI(api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir)
constructed = time.perf_counter() - t0
loaders = [t for t in threading.enumerate() if t.name == "cacheback-embedder-load"]
for t in loaders:
    t.join(120)
from cacheback.adapters import _preload
loaded = [id(job.result) for job in _preload._pending.values() if job.result is not None]
t1 = time.perf_counter()
first = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi there"}])
first_call = time.perf_counter() - t1
engine = client._cacheback.cache.engine
again = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi there"}])
print(json.dumps({
    "constructed_s": constructed, "loaders": len(loaders), "first_call_s": first_call,
    "opened_in_s": engine.opened_in_s, "embedder": engine.embedder is not None,
    "took_the_loaded_model": loaded == [id(engine.embedder)], "pending_after": len(_preload._pending),
    "tier": again.cacheback.tier,
}))
client.close()
"""


def test_the_model_loads_in_the_background_from_construction(fake: FakeProvider, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BACKGROUND_LOAD, fake.openai_base_url, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["loaders"] == 1 and out["embedder"] is True and out["tier"] == "exact"
    assert out["constructed_s"] < 2.0  # construction does not wait for the model
    # The engine took the model loaded in the background: its open did not load another.
    assert out["took_the_loaded_model"] is True and out["pending_after"] == 0, out


FORK_WHILE_LOADING = """
import multiprocessing, signal, sys
from cacheback import CachedOpenAI

base, cache_dir = sys.argv[1:3]
client = CachedOpenAI(api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir)

def ask(q):
    return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": q}])

def child():
    signal.alarm(60)  # a child waiting for the parent's loader thread would hang here
    print("child", ask("What is Zig?").cacheback.tier, flush=True)

proc = multiprocessing.get_context("fork").Process(target=child)
proc.start()  # at once: the parent's model is still loading
proc.join(90)
print("child exit", proc.exitcode, flush=True)
print("parent", ask("What is Zig?").cacheback.tier, flush=True)
client.close()
"""


def test_a_fork_during_the_background_load_neither_hangs_nor_shares_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_WHILE_LOADING,
         fake.openai_base_url, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "child upstream" in lines and "child exit 0" in lines, proc.stdout + proc.stderr
    assert lines[-1] in ("parent exact", "parent verbatim"), proc.stdout + proc.stderr
