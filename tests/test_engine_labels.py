"""What a hit is reported as, and which texts are "the same text": remembered paraphrase
hits, lone surrogates, and whitespace that carries meaning. Real ONNX embeddings, real
SQLite files, and the proxy as a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _proxy_helpers import RunningProxy, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncSemanticCache
from cacheback.core._call import Text, UpstreamCall
from cacheback.core._errors import ConfigError
from cacheback.core._routing import cosine_rule
from cacheback.core._settings import Settings
from cacheback.core._types import LookupRequest, fold_whitespace, text_hash
from cacheback.engine._engine import AsyncEngine

STORED = "What is the capital city of France?"
PARAPHRASE = "What's the capital city of France?"


def make(cache_dir: Path, embedder: Any, **kw: Any) -> AsyncSemanticCache:
    return AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder, **kw)


def embed_batches(cache: AsyncSemanticCache) -> int:
    batches: int = cache.engine._stages["embed_batcher"].batches  # type: ignore[attr-defined]
    return batches


def answering(answer: str) -> UpstreamCall:
    """An upstream that answers with a fixed text (no provider involved)."""

    async def send() -> str:
        return answer

    def no_stream() -> Any:
        raise AssertionError("no stream here")

    return UpstreamCall(send=send, streaming=False, extract=lambda text: (Text(text), {}), reader=no_stream)


# --- a repeated paraphrase is still a verbatim hit ---------------------------------------------


@pytest.mark.anyio
async def test_a_repeated_paraphrase_stays_a_verbatim_hit(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate(STORED, "Paris")
        first = await cache.lookup_detailed(PARAPHRASE)
        assert first.tier == "verbatim" and first.similarity is not None and first.similarity < 1.0
        batches = embed_batches(cache)
        second = await cache.lookup_detailed(PARAPHRASE)
        # Served from memory (no embedding), and reported as what it is.
        assert embed_batches(cache) == batches
        assert second.tier == "verbatim" and second.answer == "Paris"
        assert second.similarity == first.similarity and second.entry_id == first.entry_id
        assert (await cache.lookup_detailed(STORED)).tier == "exact"
        tiers = (await cache.stats())["tiers"]
        assert tiers["verbatim"] == 2 and tiers["exact"] == 1


@pytest.mark.anyio
async def test_a_remembered_paraphrase_hit_never_serves_an_exact_only_request(
    cache_dir: Path, embedder: Any
) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate(STORED, "Paris")
        assert (await cache.lookup_detailed(PARAPHRASE)).tier == "verbatim"
        exact_only = await cache.engine.lookup(LookupRequest(query=PARAPHRASE, semantic=False))
        assert exact_only.tier.value == "miss" and exact_only.entry is None


@pytest.mark.anyio
@pytest.mark.parametrize("invalidate", ["negative", "wrong_hit", "delete"])
async def test_remembered_paraphrase_hits_are_invalidated(
    cache_dir: Path, embedder: Any, invalidate: str
) -> None:
    async with make(cache_dir, embedder) as cache:
        entry_id = await cache.populate(STORED, "Paris")
        assert (await cache.lookup_detailed(PARAPHRASE)).tier == "verbatim"
        if invalidate == "negative":
            await cache.negative.add(PARAPHRASE, reason="policy", category="test")
            expected = "blocked"
        elif invalidate == "wrong_hit":
            assert await cache.report_wrong_hit(entry_id)
            expected = "miss"
        else:
            await cache.engine.admin.delete([entry_id])
            expected = "miss"
        again = await cache.lookup_detailed(PARAPHRASE)
        assert again.tier == expected and again.answer is None


@pytest.mark.anyio
async def test_a_paraphrase_hit_made_while_an_invalidation_ran_is_not_remembered(
    cache_dir: Path, embedder: Any
) -> None:
    bumps: list[int] = []

    def rule(query: str, candidate: str, similarity: float, threshold: float) -> tuple[bool, tuple[str, ...]]:
        if not bumps:  # a blocklist entry or a delete lands while the first lookup is routed
            bumps.append(1)
            engine.hot.bump()
        return cosine_rule(query, candidate, similarity, threshold)

    engine = AsyncEngine(Settings.from_env(cache_dir=cache_dir), embedder=embedder, verbatim_rule=rule)
    async with engine:
        await engine.populate(LookupRequest(query=STORED), "Paris")
        first = await engine.run(LookupRequest(query=PARAPHRASE))
        assert first.outcome is not None and first.outcome.tier.value == "verbatim"
        assert engine.hot.get(first.scope, first.query_hash, first.now) is None  # may be stale
        second = await engine.run(LookupRequest(query=PARAPHRASE))
        assert second.outcome is not None and second.outcome.tier.value == "verbatim"
        remembered = engine.hot.get(second.scope, second.query_hash, second.now)
        assert remembered is not None and remembered.tier.value == "verbatim"


@pytest.fixture
def proxy(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[RunningProxy]:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
        yield px


def test_the_proxy_reports_a_repeated_paraphrase_as_verbatim(proxy: RunningProxy, fake: FakeProvider) -> None:
    import time

    def ask(text: str) -> Any:
        with proxy.openai() as client:
            return client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": text}]
            )

    assert ask(STORED).headers["x-cacheback-tier"] == "upstream"
    time.sleep(0.25)  # the write-behind fill lands
    first, second = ask(PARAPHRASE), ask(PARAPHRASE)
    for raw in (first, second):
        assert raw.headers["x-cacheback-tier"] == "verbatim" and raw.headers["x-cacheback-hit"] == "true"
    assert second.headers["x-cacheback-similarity"] == first.headers["x-cacheback-similarity"] != "1.0000"
    assert fake.count("chat") == 1
    with proxy.http() as http:
        tiers = http.get("/v1/cache/stats").json()["tiers"]
        metrics = http.get("/metrics").text
    assert tiers["verbatim"] == 2 and tiers["exact"] == 0
    assert 'endpoint="chat",tier="verbatim",status="200"} 2' in metrics
    assert 'endpoint="chat",tier="exact"' not in metrics


# --- lone surrogates ----------------------------------------------------------------------------


def test_lone_surrogates_hash_apart_and_never_raise() -> None:
    assert text_hash("\ud800 hi") != text_hash("\udc00 hi") != text_hash("\ufffd hi")
    assert text_hash("\ud800 hi") == text_hash(" \ud800  hi ")
    assert text_hash("plain text") == text_hash("plain  text ")


@pytest.mark.anyio
async def test_lone_surrogates_work_end_to_end(cache_dir: Path, embedder: Any) -> None:
    question = "How do I parse the JSON string \ud800 in Python?"
    async with make(cache_dir, embedder) as cache:
        await cache.populate(question, "Use json.loads.")
        exact = await cache.lookup_detailed(question)
        assert exact.tier == "exact" and exact.answer == "Use json.loads."
        # Another lone surrogate is another text: never an exact match. Semantically the
        # two embed alike (both become U+FFFD for the embedder): a verbatim hit is fine.
        other = await cache.lookup_detailed("How do I parse the JSON string \udc00 in Python?")
        assert other.tier != "exact"
        paraphrase = await cache.lookup_detailed("How can I parse the JSON string \ud800 in Python?")
        assert paraphrase.tier == "verbatim" and paraphrase.answer == "Use json.loads."
        assert (await cache.lookup_detailed("What is \udfff the boiling point of water?")).tier == "miss"
        # An upstream answer to such a question in an empty scope: embedded by the persister.
        handler = answering("Forty-two.")
        job = await cache.engine.run(LookupRequest(query="\udbff What is the answer?", scope="s2"), handler)
        assert job.outcome is not None and job.outcome.tier.value == "upstream"
        await cache.flush()
        again = await cache.lookup_detailed("\udbff What is the answer?", scope="s2")
        assert again.tier == "exact" and again.answer == "Forty-two."
        assert (await cache.lookup_detailed("\udbfe What is the answer?", scope="s2")).tier != "exact"
        # The blocklist accepts and matches such text too.
        await cache.negative.add("\ud800 How to hack into systems", reason="policy", category="test")
        assert (await cache.lookup_detailed("\ud800 How to hack into systems")).tier == "blocked"
        assert await cache.negative.check("\udc01 How to hack into systems") is not None


@pytest.mark.anyio
async def test_an_answer_with_lone_surrogates_is_returned_but_never_stored(
    cache_dir: Path, embedder: Any
) -> None:
    async with make(cache_dir, embedder) as cache:
        run = cache.engine.run
        bad = await run(LookupRequest(query="Spell a broken character", scope="s"), answering("x\udc80"))
        good = await run(LookupRequest(query="What is two plus two?", scope="s"), answering("Four."))
        assert bad.outcome is not None and bad.outcome.tier.value == "upstream"
        await cache.flush()
        # The other answer of the same write batch is stored; the unstorable one is not.
        assert (await cache.lookup_detailed("What is two plus two?", scope="s")).answer == "Four."
        assert (await cache.lookup_detailed("Spell a broken character", scope="s")).tier == "miss"
        assert good.outcome is not None and cache.engine.stats.session.get("cache_errors", 0) == 0
        with pytest.raises(ConfigError, match="lone surrogates"):
            await cache.populate("Another question", "broken \ud800 answer")


# --- whitespace that carries meaning -------------------------------------------------------------

CODE = "Is this valid Python?\nif x:\n    return 1"
FLAT = "Is this valid Python?\nif x:\nreturn 1"


def test_folding_keeps_line_breaks_and_indentation() -> None:
    assert text_hash(CODE) != text_hash(FLAT)
    assert text_hash("Is this valid Python?\nif x:\n\treturn 1") != text_hash(CODE)
    assert text_hash("a\nb") != text_hash("a b") != text_hash("a\n\nb")
    # Spacing inside a line, the ends, trailing spaces of lines and CRLF are still folded.
    assert text_hash("What is  X?") == text_hash("What is X?") == text_hash(" What is X?  ")
    assert text_hash("What\tis X?") == text_hash("What is X?")
    assert text_hash("\n  " + CODE.replace("\n", "  \r\n") + " \n\n") == text_hash(CODE)
    assert text_hash("if x:\n    return  1") == text_hash("if x:\n    return 1")
    assert fold_whitespace("a  \n   b  c \n \n d") == "a\n   b c\n\n d"


@pytest.mark.anyio
async def test_indentation_is_not_an_exact_match(cache_dir: Path, embedder: Any) -> None:
    async with make(cache_dir, embedder) as cache:
        await cache.populate(CODE, "Only inside a function.")
        assert (await cache.lookup_detailed(CODE)).tier == "exact"
        assert (await cache.lookup_detailed(CODE + "  ")).tier == "exact"
        assert (await cache.lookup_detailed(CODE.replace("if x:", "if  x:"))).tier == "exact"
        assert (await cache.lookup_detailed(FLAT)).tier != "exact"
