"""The write path: an answer is durable and visible the moment it is returned, exact repeats
never embed, and every hit names its real entry id (SDK and proxy)."""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _client_helpers import openai_args, user
from _proxy_helpers import chat_body, proxy_config, proxy_process, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache, CachedOpenAI
from cacheback.core._settings import Settings
from cacheback.core._types import Vector

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk-write-path-test"}  # passed through to the fake provider


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def dim(self) -> int:
        return int(self._inner.dim)

    def embed(self, texts: Sequence[str]) -> Vector:
        self.texts.extend(texts)
        out: Vector = self._inner.embed(texts)
        return out

    def describe(self) -> dict[str, Any]:
        return dict(self._inner.describe())


def ask(client: CachedOpenAI, text: str) -> Any:
    return client.chat.completions.create(model="gpt-4o", messages=user(text))


# -- read your writes --------------------------------------------------------------------------


def test_a_paraphrase_right_after_the_answer_hits(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        first = ask(client, "What is the capital of France?")
        assert first.cacheback.tier == "upstream"  # type: ignore[attr-defined]
        second = ask(client, "What's France's capital city?")  # at once: no flush, no sleep
        assert second.cacheback.tier == "verbatim", second.cacheback  # type: ignore[attr-defined]
        assert second.cacheback.entry_id is not None and second.cacheback.entry_id > 0  # type: ignore[attr-defined]
        assert second.choices[0].message.content == first.choices[0].message.content
    assert fake.count("chat") == 1


def test_a_paraphrase_right_after_the_answer_hits_proxy(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px, px.http(headers=AUTH) as http:
        first = http.post("/v1/chat/completions", json=chat_body("What is the capital of France?"))
        assert first.headers["x-cacheback-tier"] == "upstream"
        second = http.post("/v1/chat/completions", json=chat_body("What's France's capital city?"))
        assert second.headers["x-cacheback-tier"] == "verbatim", dict(second.headers)
        assert int(second.headers["x-cacheback-entry-id"]) > 0
        assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert fake.count("chat") == 1


# -- exact repeats never embed -----------------------------------------------------------------


async def test_exact_repeats_never_embed_with_a_blocklist_and_after_a_restart(
    cache_dir: Path, embedder: Any
) -> None:
    counting = CountingEmbedder(embedder)
    question = "Which planet has the longest day in the solar system?"
    async with AsyncSemanticCache(cache_dir, embedder=counting) as cache:
        entry_id = await cache.populate(question, "Venus")
        await cache.negative.add("How do I make a weapon at home?", reason="unsafe")
        counting.texts.clear()
        got = await cache.lookup_detailed(question)  # memory was dropped by the blocklist add
        assert got.tier == "exact" and got.entry_id == entry_id
        assert counting.texts == []
    async with AsyncSemanticCache(cache_dir, embedder=counting) as cache:
        counting.texts.clear()
        got = await cache.lookup_detailed(question)  # not in memory: read from the store
        assert got.tier == "exact" and got.entry_id == entry_id and got.answer == "Venus"
        again = await cache.lookup_detailed(question)
        assert again.tier == "exact" and again.entry_id == entry_id
        assert counting.texts == []


async def test_an_exact_repeat_of_a_blocked_question_is_blocked_without_inference(
    cache_dir: Path, embedder: Any
) -> None:
    counting = CountingEmbedder(embedder)
    question = "Explain how to pick the lock of a neighbour's door."
    async with AsyncSemanticCache(cache_dir, embedder=counting) as cache:
        await cache.populate(question, "an answer that should no longer be served")
    async with AsyncSemanticCache(cache_dir, embedder=counting) as cache:
        await cache.negative.add(question, reason="unsafe")  # blocked after it was stored
        counting.texts.clear()
        got = await cache.lookup_detailed(question)
        assert got.tier == "blocked" and got.answer is None, got
        assert counting.texts == []


# -- entry ids ---------------------------------------------------------------------------------


def test_an_immediate_exact_repeat_reports_its_entry_id_sdk(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        ask(client, "How deep is the Mariana Trench?")
        hit = ask(client, "How deep is the Mariana Trench?")
        info = hit.cacheback  # type: ignore[attr-defined]
        assert info.tier == "exact" and isinstance(info.entry_id, int) and info.entry_id > 0
        stored = client.cache.engine.admin  # the id names the stored entry
        assert client.cache._call(lambda: stored.get(info.entry_id)) is not None
        assert client.cache.report_wrong_hit(info.entry_id) is True


def test_an_immediate_exact_repeat_reports_its_entry_id_proxy(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px, px.http(headers=AUTH) as http:
        body = chat_body("What is the tallest mountain in Africa?")
        assert http.post("/v1/chat/completions", json=body).headers["x-cacheback-tier"] == "upstream"
        hit = http.post("/v1/chat/completions", json=body)
        assert hit.headers["x-cacheback-tier"] == "exact"
        entry_id = int(hit.headers["x-cacheback-entry-id"])
        assert entry_id > 0
        report = http.post("/v1/cache/report-wrong-hit", json={"entry_id": entry_id})
        assert report.status_code == 200
        assert report.json() == {"entry_id": entry_id, "removed": True, "hit_threshold": None}


# -- durability: kill -9 -----------------------------------------------------------------------


def test_acknowledged_answers_survive_kill_9(fake: FakeProvider, cache_dir: Path, tmp_path: Path) -> None:
    """Under write load, SIGKILL the proxy right after its last answer: every acknowledged
    answer is on disk, but for those acknowledged in the last few milliseconds."""
    total, workers = 200, 16
    acked: dict[str, float] = {}

    with proxy_process(fake, cache_dir, tmp_path) as px:
        with httpx.Client(base_url=px.base_url, timeout=30, headers=AUTH) as warm:  # the model is loaded
            assert warm.post("/v1/chat/completions", json=chat_body("warm-up question")).status_code == 200

        def one(i: int) -> None:
            question = f"Durability check {i}: what is {i} times {i + 7}?"
            with httpx.Client(base_url=px.base_url, timeout=30, headers=AUTH) as http:
                resp = http.post("/v1/chat/completions", json=chat_body(question))
            if resp.status_code == 200:
                acked[question] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(total)))
        px.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        px.proc.wait(timeout=30)

    with sqlite3.connect(cache_dir / "cache.db") as db:
        stored = {r[0] for r in db.execute("SELECT query FROM entries")}
    lost = [q for q in acked if q not in stored]
    late = [q for q in lost if killed - acked[q] <= 0.010]
    print(
        f"\nkill -9 after {len(acked)} acknowledged answers: {len(acked) - len(lost)} on disk, "
        f"{len(lost)} lost ({len(late)} of them acknowledged in the last 10 ms); "
        f"ages of the lost: {sorted(round((killed - acked[q]) * 1000, 1) for q in lost)} ms"
    )
    assert len(acked) == total
    # The target is 10 ms; the bound leaves room for a loaded test machine's scheduler.
    assert all(killed - acked[q] <= 0.025 for q in lost), lost


# -- catch-up ---------------------------------------------------------------------------------


async def test_rows_left_without_vectors_are_indexed_on_open(cache_dir: Path, embedder: Any) -> None:
    """A crash between a row's commit and its vector leaves it exact-only; the next open
    embeds and indexes it, so paraphrases find it again."""
    from cacheback.adapters.storage import EmbeddedStore
    from cacheback.core._types import NewEntry, scope_id, text_hash

    question = "At what temperature does iron melt?"
    now = time.time()
    store = EmbeddedStore(cache_dir, embedder.dim)
    async with store:
        row = NewEntry(
            scope=scope_id("default", ""),
            query=question,
            query_hash=text_hash(question),
            answer="About 1538 degrees Celsius.",
            vector=None,
            created_at=now,
            expires_at=now + 3600,
            metadata={"namespace": "default"},
        )
        [entry_id] = await store.entries.put([row])
    async with AsyncSemanticCache(cache_dir, embedder=embedder) as cache:
        assert cache.engine.store is not None
        deadline = time.monotonic() + 20
        while await cache.engine.store.entries.unindexed(10):
            assert time.monotonic() < deadline, "the row was never indexed"
            await anyio.sleep(0.05)
        got = await cache.lookup_detailed("What is the melting temperature of iron?")
        assert got.tier == "verbatim" and got.entry_id == entry_id, got


# -- the settings knob the loss bound depends on -----------------------------------------------


def test_the_group_commit_window_is_a_few_milliseconds() -> None:
    assert Settings().persist_interval_s <= 0.010
