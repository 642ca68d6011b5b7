"""A cached client's life: fork, close, exit, Ctrl-C, garbage collection, many threads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _client_helpers import openai_args, user
from fake_provider import FakeProvider, Reply

from cacheback import AsyncCachedOpenAI, CachedOpenAI, EngineClosed, SemanticCache

pytestmark = pytest.mark.anyio

# A subprocess's client, pointed at the fake (argv: base url, cache dir).
CLIENT = """
import os, signal, sys, threading, time
from cacheback import CachedOpenAI
base, cache_dir = sys.argv[1:3]
client = CachedOpenAI(api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir)
def ask(q):
    return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": q}])
"""


def ask(client: CachedOpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o", messages=user(text), **kw)


async def aask(client: AsyncCachedOpenAI, text: str) -> Any:
    return await client.chat.completions.create(model="gpt-4o", messages=user(text))


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def await_until(cond: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def portal_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "cacheback-portal"}


def entries(cache_dir: Path, embedder: Any) -> int:
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        return int(cache.stats["entries"])


def run_script(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # In a session of its own, ended whole: a hung fork child (a pool worker) must not outlive
    # its test, or it goes on to call the fake provider during the tests that follow.
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT + script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- fork ------------------------------------------------------------------------------

FORK = """
import multiprocessing
assert ask("What is Rust?").cacheback_hit is False
client.cache.flush()

def child():
    signal.alarm(30)  # a hung child must end (the bug: it waited forever for a portal thread)
    hit, miss = ask("What is Rust?"), ask("What is Go?")
    print("child", hit.cacheback_hit, miss.cacheback_hit, flush=True)
    # no close(): the child's exit flushes its own engine and leaves the parent's alone

proc = multiprocessing.get_context("fork").Process(target=child)
proc.start()
proc.join(60)
print("child exit", proc.exitcode, flush=True)
print("parent", ask("What is Rust?").cacheback_hit, client.cache.stats["entries"], flush=True)
client.close()
"""


def test_a_forked_child_opens_its_own_engine_on_the_same_cache(fake: FakeProvider, tmp_path: Path) -> None:
    proc = run_script(FORK, fake.openai_base_url, str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "child True False" in lines, proc.stdout + proc.stderr  # the parent's answer hit
    assert "child exit 0" in lines
    # The parent still works after the child exited, and sees the child's flushed answer.
    assert "parent True 2" in lines, proc.stdout + proc.stderr
    assert fake.count("chat") == 2


POOL = """
import multiprocessing
import httpx
# As with the plain SDK, children must not share the parent's keep-alive connections.
client.close()
client = CachedOpenAI(
    api_key="sk-test", base_url=base, max_retries=0, cache_dir=cache_dir,
    http_client=httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)),
    cache_settings={"persist_interval_s": 1.0},  # a write-behind slower than the pool's end
)
ask("What is Rust?")
client.cache.flush()

def work(i):
    return ask(f"Pool question number {i}").cacheback.tier

# Pool.__exit__ ends its workers with SIGTERM: nothing a worker answered may be lost.
with multiprocessing.get_context("fork").Pool(2) as pool:
    print("tiers", sorted(set(pool.map(work, range(8)))), flush=True)
hits = [ask(f"Pool question number {i}").cacheback.tier for i in range(8)]
print("parent", sorted(set(hits)), flush=True)
client.close()
"""


def test_a_fork_pool_workers_answers_are_stored_before_they_return(
    fake: FakeProvider, tmp_path: Path
) -> None:
    proc = run_script(POOL, fake.openai_base_url, str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "tiers ['upstream']" in lines, proc.stdout + proc.stderr
    assert "parent ['exact']" in lines, proc.stdout + proc.stderr
    assert fake.count("chat") == 9


# -- exit, Ctrl-C, close with calls in flight ------------------------------------------

EXIT_WITH_A_CALL_IN_FLIGHT = """
ask("What is Rust?")  # answered: written behind, not flushed yet
threading.Thread(target=ask, args=("A question the provider never answers",), daemon=True).start()
sys.stdin.readline()  # the test says when that call has reached the provider
"""


def test_exit_flushes_but_does_not_wait_for_a_call_still_upstream(
    fake: FakeProvider, tmp_path: Path, embedder: Any
) -> None:
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT + EXIT_WITH_A_CALL_IN_FLIGHT, fake.openai_base_url, str(cache_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reached = threading.Event()

    def respond(req: Any) -> Reply | None:
        if "never" not in req.question:
            return None
        reached.set()
        return Reply(hang=True)  # the SDK's timeout is 10 minutes

    fake.responder = respond
    try:
        assert reached.wait(60)
        t0 = time.monotonic()
        _, err = proc.communicate("go\n", timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert took < 6  # a grace of a second, then the call is cancelled
    assert entries(cache_dir, embedder) == 1  # the answer in hand was flushed


CTRL_C = """
# A child of a background job (no job control) starts with SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler: give it the one a terminal's process has.
signal.signal(signal.SIGINT, signal.default_int_handler)
from cacheback.adapters.clients import _core
_core.CLOSE_GRACE_S = 30.0  # so that only a call cancelled by the Ctrl-C lets close be quick
try:
    ask("A slow question")
except KeyboardInterrupt:
    t = time.monotonic()
    client.close()
    print(f"closed in {time.monotonic() - t:.2f}", flush=True)
"""


def test_ctrl_c_during_a_sync_call_cancels_its_upstream_call(fake: FakeProvider, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT + CTRL_C, fake.openai_base_url, str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def respond(req: Any) -> Reply | None:
        # Only this child's call, once: any other request must not send a Ctrl-C at some
        # other moment of the child's life (one during its exit kills it silently).
        if req.question != "A slow question" or interrupted.is_set():
            return None
        interrupted.set()
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C while the call waits for the provider
        return Reply(delay=15)

    interrupted = threading.Event()
    fake.responder = respond
    try:
        out, err = proc.communicate(timeout=100)  # a loaded machine takes ~40 s to get there
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert fake.count("chat") == 1
    closed = [line for line in out.splitlines() if line.startswith("closed in")]
    assert closed, out + err
    # Nothing left running for it: close waits neither for the provider nor for the grace.
    assert float(closed[0].split()[-1]) < 10


def test_close_cancels_a_call_still_upstream_after_a_grace(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    client = CachedOpenAI(**openai_args(fake, cache_dir, embedder, timeout=30.0))
    ask(client, "What is Rust?")  # in hand: written behind
    fake.responder = lambda req: Reply(hang=True) if "never" in req.question else None
    errors: list[BaseException] = []

    def hung() -> None:
        try:
            ask(client, "A question the provider never answers")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    assert wait_until(lambda: fake.count("chat") == 2)
    t0 = time.monotonic()
    client.close()
    assert time.monotonic() - t0 < 5
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], EngineClosed), errors
    assert entries(cache_dir, embedder) == 1


async def test_close_cancels_an_async_call_still_upstream(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    client = AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder, timeout=30.0))
    await aask(client, "What is Rust?")
    fake.responder = lambda req: Reply(hang=True) if "never" in req.question else None
    task = asyncio.create_task(aask(client, "A question the provider never answers"))

    async def reached() -> bool:
        return fake.count("chat") == 2

    await await_until(reached)
    t0 = time.monotonic()
    await client.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(EngineClosed):  # the cache closes first: its grace, then cancelled
        await task
    assert entries(cache_dir, embedder) == 1


def test_a_sync_answer_arriving_within_the_close_grace_is_delivered_and_stored(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    client = CachedOpenAI(**openai_args(fake, cache_dir, embedder, timeout=30.0))
    ask(client, "What is Rust?")
    fake.responder = lambda req: Reply(delay=0.4) if "slow" in req.question else None
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(ask(client, "A slow but honest question")))
    thread.start()
    assert wait_until(lambda: fake.count("chat") == 2)
    client.close()  # the SDK's HTTP client closes only after the grace
    thread.join(5)
    assert len(answers) == 1 and answers[0].cacheback.tier == "upstream"
    assert entries(cache_dir, embedder) == 2


async def test_an_async_answer_arriving_within_the_close_grace_is_delivered_and_stored(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    client = AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder, timeout=30.0))
    await aask(client, "What is Rust?")
    fake.responder = lambda req: Reply(delay=0.4) if "slow" in req.question else None
    task = asyncio.create_task(aask(client, "A slow but honest question"))

    async def reached() -> bool:
        return fake.count("chat") == 2

    await await_until(reached)
    await client.close()
    assert (await task).cacheback.tier == "upstream"
    assert entries(cache_dir, embedder) == 2


# -- cancelled async calls and coalescing ----------------------------------------------


async def test_a_cancelled_async_call_cancels_its_upstream_call(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        fake.responder = lambda req: Reply(delay=0.5)
        task = asyncio.create_task(aask(client, "A slow question"))

        async def reached() -> bool:
            return fake.count("chat") == 1

        await await_until(reached)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.8)  # past the answer, had the call gone on
        await client.cache.flush()
        fake.responder = None
        again = await aask(client, "A slow question")
        assert again.cacheback_hit is False and fake.count("chat") == 2  # nothing was stored


async def test_a_shared_upstream_call_goes_on_while_a_caller_still_waits(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        fake.responder = lambda req: Reply(delay=0.5)

        async def joined(n: int) -> Callable[[], Any]:
            async def check() -> bool:
                return bool((await client.cache.stats())["coalesced"] >= n)

            return check

        # Leader cancelled, follower waits: the call goes on and the follower gets it.
        leader = asyncio.create_task(aask(client, "A shared question"))
        follower = asyncio.create_task(aask(client, "A shared question"))
        await await_until(await joined(1))
        leader.cancel()
        answer = await follower
        assert answer.cacheback.reason == "coalesced" and fake.count("chat") == 1

        # Both callers leave: then the call is cancelled, and nothing is stored.
        leader = asyncio.create_task(aask(client, "Another shared question"))
        follower = asyncio.create_task(aask(client, "Another shared question"))
        await await_until(await joined(2))
        leader.cancel()
        await asyncio.sleep(0.1)
        follower.cancel()
        await asyncio.gather(leader, follower, return_exceptions=True)
        await asyncio.sleep(0.8)
        await client.cache.flush()
        fake.responder = None
        again = await aask(client, "Another shared question")
        assert again.cacheback_hit is False and fake.count("chat") == 3


# -- threads, garbage, use after close -------------------------------------------------


def test_a_sync_client_runs_more_than_forty_upstream_calls_at_once(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    n = 48  # anyio's default thread limiter allows 40
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        ask(client, "warm up")
        fake.responder = lambda req: Reply(delay=4.0)
        with ThreadPoolExecutor(n) as pool:
            calls = [pool.submit(ask, client, f"Independent question {i}: {i * 7919}?") for i in range(n)]
            # All of them reach the provider before the first answer comes back.
            assert wait_until(lambda: fake.count("chat") == n + 1, timeout=3.5), fake.count("chat")
            assert all(c.result().cacheback_hit is False for c in calls)


def test_an_unclosed_sync_client_is_closed_and_flushed_once_garbage(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    before = portal_threads()
    client = CachedOpenAI(**openai_args(fake, cache_dir, embedder))
    list(ask(client, "A streamed question", stream=True))
    ask(client, "What is Rust?")  # written behind, not flushed
    copy = client.with_options(timeout=5.0)
    (portal,) = portal_threads() - before
    del client
    gc.collect()
    assert ask(copy, "What is Rust?").cacheback_hit is True  # the copy keeps the shared cache open
    assert portal.is_alive()
    del copy
    gc.collect()
    portal.join(10)
    assert not portal.is_alive()  # the last client gone: its portal closed
    assert entries(cache_dir, embedder) == 2  # and the write-behind flushed


def test_a_closed_client_fails_like_the_sdk_and_never_reopens(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    plain = fake.openai()
    plain.close()
    with pytest.raises(RuntimeError) as closed:
        ask(plain, "What is Rust?")  # type: ignore[arg-type]
    before = portal_threads()
    client = CachedOpenAI(**openai_args(fake, cache_dir, embedder))
    ask(client, "What is Rust?")
    client.cache.flush()
    # A copy shares the SDK's HTTP client and the cache: closing it closes both.
    client.with_options(timeout=5.0).close()
    for kw in ({}, {"stream": True}, {"cacheback": {"ttl": 60}}):
        with pytest.raises(type(closed.value)) as ours:
            ask(client, "What is Rust?", **kw)  # was a hit
        assert str(ours.value) == str(closed.value)
    with pytest.raises(EngineClosed):
        client.cache  # noqa: B018
    assert portal_threads() <= before  # nothing reopened
    client.close()  # twice is fine
    assert fake.count("chat") == 1


async def test_a_closed_async_client_fails_like_the_sdk(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    plain = fake.async_openai()
    await plain.close()
    with pytest.raises(RuntimeError) as closed:
        await aask(plain, "What is Rust?")  # type: ignore[arg-type]
    client = AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder))
    await aask(client, "What is Rust?")
    await client.cache.flush()
    await client.close()
    with pytest.raises(type(closed.value)) as ours:
        await aask(client, "What is Rust?")  # was a hit
    assert str(ours.value) == str(closed.value)
    with pytest.raises(EngineClosed):
        client.cache  # noqa: B018
    assert fake.count("chat") == 1
