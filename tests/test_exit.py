"""A program that never closes its sync client or cache still exits, and its answers
written behind are flushed at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from fake_provider import FakeProvider

from cacheback import SemanticCache

SCRIPT = """
import sys
from cacheback import CachedOpenAI, SemanticCache
base, cache_dir, other_dir = sys.argv[1:4]
client = CachedOpenAI(api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir)
r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "What is Rust?"}])
assert r.cacheback_hit is False
cache = SemanticCache(cache_dir=other_dir)
cache.populate("What is Go?", "A language.")
print("done", flush=True)
# no close(): the interpreter must still exit, after flushing both caches
"""


def test_unclosed_sync_clients_exit_and_flush(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    cache_dir, other_dir = tmp_path / "client", tmp_path / "other"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, fake.openai_base_url, str(cache_dir), str(other_dir)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        assert cache.stats["entries"] == 1  # the write-behind answer reached the store
    with SemanticCache(cache_dir=other_dir, embedder=embedder) as cache:
        assert cache.lookup("What is Go?") == "A language."


ASYNC_SCRIPT = """
import asyncio, sys
from cacheback import AsyncCachedOpenAI, AsyncSemanticCache
base, cache_dir, other_dir = sys.argv[1:4]

async def main():
    client = AsyncCachedOpenAI(api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir)
    msgs = [{"role": "user", "content": "What is Rust?"}]
    await client.chat.completions.create(model="gpt-4o", messages=msgs)
    await client.cache.flush()
    cache = AsyncSemanticCache(cache_dir=other_dir)
    await cache.populate("What is Go?", "A language.")
    # no close(): asyncio.run cancels the engines' tasks; they must still release the store

asyncio.run(main())
print("done", flush=True)
"""


def test_unclosed_async_clients_let_the_process_exit(
    fake: FakeProvider, tmp_path: Path, embedder: Any
) -> None:
    cache_dir, other_dir = tmp_path / "client", tmp_path / "other"
    proc = subprocess.run(
        [sys.executable, "-c", ASYNC_SCRIPT, fake.openai_base_url, str(cache_dir), str(other_dir)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        assert cache.stats["entries"] == 1
    with SemanticCache(cache_dir=other_dir, embedder=embedder) as cache:
        assert cache.lookup("What is Go?") == "A language."
