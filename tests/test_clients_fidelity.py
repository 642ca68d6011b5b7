"""A cache hit is what the SDK would have returned on a miss: usage, ids, echoed request
fields, ``_request_id``, stream event shapes, labels and types. The real SDKs over real
HTTP to the fake provider."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anthropic
import anyio
import pytest
from _client_helpers import anthropic_args, openai_args, user
from anthropic.lib.streaming import AsyncMessageStreamManager, MessageStreamManager
from anthropic.types import MessageDeltaUsage
from fake_provider import FakeProvider, Reply
from openai.types import CompletionUsage
from openai.types.responses import ResponseUsage

from cacheback import AsyncCachedAnthropic, AsyncCachedOpenAI, CachedAnthropic, CachedOpenAI
from cacheback.adapters import providers as p

pytestmark = pytest.mark.anyio
CLAUDE = "claude-sonnet-4-20250514"


@pytest.fixture
def oc(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[CachedOpenAI]:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        yield c


@pytest.fixture
def ac(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[CachedAnthropic]:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        yield c


def chat(c: CachedOpenAI, text: str, **kw: Any) -> Any:
    return c.chat.completions.create(model="gpt-4o", messages=user(text), **kw)


def message(c: CachedAnthropic, text: str, **kw: Any) -> Any:
    return c.messages.create(model=CLAUDE, max_tokens=64, messages=user(text), **kw)


# --- 1. a hit always carries usage of the SDK's type ------------------------------------------


def test_a_hit_from_a_usage_less_stream_reports_zero_usage(oc: CachedOpenAI, fake: FakeProvider) -> None:
    list(chat(oc, "Stream first, then ask plainly", stream=True))  # no include_usage: no usage
    oc.cache.flush()
    plain = chat(oc, "Stream first, then ask plainly")
    assert plain.cacheback_hit is True
    zeros = CompletionUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    assert isinstance(plain.usage, CompletionUsage) and plain.usage == zeros
    streamed = list(
        chat(oc, "Stream first, then ask plainly", stream=True, stream_options={"include_usage": True})
    )
    assert streamed[-1].choices == [] and streamed[-1].usage == plain.usage  # one rule for both
    assert fake.count("chat") == 1


def test_a_hit_reports_the_stored_usage_when_known(
    oc: CachedOpenAI, ac: CachedAnthropic, fake: FakeProvider
) -> None:
    first = chat(oc, "What is usage?")
    oc.cache.flush()
    assert chat(oc, "What is usage?").usage == first.usage
    response = oc.responses.create(model="gpt-4o", input="What is usage?")
    oc.cache.flush()
    hit = oc.responses.create(model="gpt-4o", input="What is usage?")
    assert hit.cacheback_hit is True and isinstance(hit.usage, ResponseUsage)
    assert hit.usage == response.usage
    live = message(ac, "What is usage?")
    ac.cache.flush()
    again = message(ac, "What is usage?")
    assert again.cacheback_hit is True and again.usage == live.usage


def test_rebuilt_answers_without_stored_usage_report_zeros() -> None:
    # Stored provider payloads that carry no usage (the codecs' fallback for any API).
    text = "An answer."
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [part]}
    stored_response = {"id": "resp_1", "object": "response", "status": "completed", "output": [item]}
    response = p.rebuild_response(text, json.dumps(stored_response).encode(), model="gpt-4o", keep_ids=True)
    assert response.id == "resp_1" and response.output[0].id == "msg_1"
    assert isinstance(response.usage, ResponseUsage) and response.usage.total_tokens == 0
    stored_message = {"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "end_turn"}
    stored_message["content"] = [{"type": "text", "text": text}]
    msg = p.rebuild_message(text, json.dumps(stored_message).encode(), model=CLAUDE, keep_ids=True)
    assert msg.id == "msg_1" and (msg.usage.input_tokens, msg.usage.output_tokens) == (0, 0)


# --- 2. a replayed provider response keeps the provider's ids --------------------------------


def test_a_responses_hit_keeps_the_provider_ids_so_chaining_works(
    oc: CachedOpenAI, fake: FakeProvider
) -> None:
    miss = oc.responses.create(model="gpt-4o", input="Start a chain")
    oc.cache.flush()
    hit = oc.responses.create(model="gpt-4o", input="Start a chain")
    assert hit.cacheback_hit is True
    assert hit.id == miss.id and [i.id for i in hit.output] == [i.id for i in miss.output]
    oc.responses.create(model="gpt-4o", input="And then?", previous_response_id=hit.id)
    assert fake.last_request("responses").body["previous_response_id"] == miss.id
    events = list(oc.responses.create(model="gpt-4o", input="Start a chain", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.id == miss.id
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert {e.item_id for e in deltas} == {miss.output[0].id}


def test_chat_and_message_hits_keep_the_provider_ids(
    oc: CachedOpenAI, ac: CachedAnthropic, fake: FakeProvider
) -> None:
    completion = chat(oc, "Which id?")
    oc.cache.flush()
    assert chat(oc, "Which id?").id == completion.id
    assert {c.id for c in chat(oc, "Which id?", stream=True)} == {completion.id}
    live = message(ac, "Which id?")
    ac.cache.flush()
    assert message(ac, "Which id?").id == live.id
    with ac.messages.stream(model=CLAUDE, max_tokens=64, messages=user("Which id?")) as s:
        assert s.get_final_message().id == live.id


def test_answers_with_no_provider_response_behind_them_get_new_ids() -> None:
    # A synthesized answer (no payload), even when asked to keep ids.
    assert p.rebuild_response("Made up.", None, model="gpt-4o", keep_ids=True).id.startswith("resp_cb")
    assert p.rebuild_chat_completion("Made up.", None, keep_ids=True).id.startswith("chatcmpl-cb")
    assert p.rebuild_message("Made up.", None, keep_ids=True).id.startswith("msg_cb")


# --- 3. _request_id is None on anything served without a request -----------------------------


def test_request_id_is_none_on_hits(oc: CachedOpenAI, ac: CachedAnthropic, fake: FakeProvider) -> None:
    first = chat(oc, "Request ids?")
    assert first._request_id is not None  # the fake's x-request-id
    oc.cache.flush()
    assert chat(oc, "Request ids?")._request_id is None
    oc.responses.create(model="gpt-4o", input="Request ids?")
    oc.cache.flush()
    assert oc.responses.create(model="gpt-4o", input="Request ids?")._request_id is None
    stream = chat(oc, "Request ids?", stream=True)
    assert stream.cacheback_hit is True and stream._request_id is None
    list(stream)
    message(ac, "Request ids?")
    ac.cache.flush()
    assert message(ac, "Request ids?")._request_id is None
    raw = message(ac, "Request ids?", stream=True)
    assert raw.cacheback_hit is True and raw._request_id is None
    list(raw)
    with ac.messages.stream(model=CLAUDE, max_tokens=64, messages=user("Request ids?")) as s:
        assert s.cacheback_hit is True and s._request_id is None  # type: ignore[attr-defined]
        s.until_done()


# --- 4. echoed request fields are rebuilt as the API would --------------------------------------


def test_a_responses_hit_is_the_miss_field_for_field(oc: CachedOpenAI, fake: FakeProvider) -> None:
    miss = oc.responses.create(model="gpt-4o", input="What is Rust?")
    oc.cache.flush()
    hit = oc.responses.create(model="gpt-4o", input="What is Rust?")
    assert hit.cacheback_hit is True
    assert (hit.store, hit.metadata, hit.background) == (True, {}, False)
    assert hit.model_dump() == miss.model_dump() and hit.model_fields_set == miss.model_fields_set
    # Another caller's own values are echoed, never the first caller's.
    mine = oc.responses.create(model="gpt-4o", input="What is Rust?", store=False, metadata={"k": "v"})
    assert mine.cacheback_hit is True and (mine.store, mine.metadata) == (False, {"k": "v"})
    assert fake.count("responses") == 1


def test_a_responses_hit_from_a_stream_has_the_api_defaults(oc: CachedOpenAI) -> None:
    events = list(oc.responses.create(model="gpt-4o", input="Streamed Rust?", stream=True))
    oc.cache.flush()
    hit = oc.responses.create(model="gpt-4o", input="Streamed Rust?")
    assert hit.cacheback_hit is True
    assert (hit.store, hit.metadata, hit.background) == (True, {}, False)
    assert hit.model_dump() == events[-1].response.model_dump()


def test_chat_and_message_hits_are_the_miss_field_for_field(oc: CachedOpenAI, ac: CachedAnthropic) -> None:
    miss = chat(oc, "Same fields?")
    oc.cache.flush()
    assert chat(oc, "Same fields?").model_dump() == miss.model_dump()
    live = message(ac, "Same fields?")
    ac.cache.flush()
    assert message(ac, "Same fields?").model_dump() == live.model_dump()


# --- 5. replayed Anthropic events have the provider's shape -------------------------------------


def test_a_replayed_message_delta_carries_only_delta_usage_fields(ac: CachedAnthropic) -> None:
    live = list(message(ac, "Anthropic stream shape", stream=True))
    ac.cache.flush()
    stream = message(ac, "Anthropic stream shape", stream=True)
    replay = list(stream)
    assert stream.cacheback_hit is True
    (delta,) = [e for e in replay if e.type == "message_delta"]
    assert isinstance(delta.usage, MessageDeltaUsage) and not delta.usage.model_extra
    assert set(delta.usage.model_fields_set) <= set(MessageDeltaUsage.model_fields)
    (live_delta,) = [e for e in live if e.type == "message_delta"]
    assert delta.usage.output_tokens == live_delta.usage.output_tokens


# --- 6. a bypass says why -----------------------------------------------------------------------


def test_a_bypass_gives_its_reason(oc: CachedOpenAI) -> None:
    several = chat(oc, "Two choices please", n=2)
    assert len(several.choices) == 2
    assert several.cacheback.tier == "bypass" and several.cacheback.reason == "n>1"
    skipped = chat(oc, "Skip the cache", cacheback={"bypass": True})
    assert skipped.cacheback.tier == "bypass" and skipped.cacheback.reason == "bypass requested"


# --- 7. labels of identical requests close together ------------------------------------------


class _GatedEmbedder:
    """The real embedder, except that the ``hold``-th embedding of ``text`` waits for
    ``release``: a request that stays in the embed stage while another one finishes."""

    def __init__(self, inner: Any, text: str, hold: int) -> None:
        self._inner = inner
        self._text = text
        self._hold = hold
        self._seen = 0
        self.holding = threading.Event()
        self.release = threading.Event()

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def dim(self) -> int:
        return int(self._inner.dim)

    def describe(self) -> dict[str, Any]:
        return dict(self._inner.describe())

    def embed(self, texts: Sequence[str]) -> Any:
        if self._text in texts:
            self._seen += 1
            if self._seen == self._hold:
                self.holding.set()
                assert self.release.wait(30)
        return self._inner.embed(texts)


def test_an_identical_request_that_finds_the_answer_stored_is_an_exact_hit(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    question = "Coalesce me, please"
    gated = _GatedEmbedder(embedder, question, hold=2)
    with CachedOpenAI(**openai_args(fake, cache_dir, gated)) as c:
        chat(c, "Something else in this scope")  # a non-empty scope: questions are embedded
        c.cache.flush()
        fake.responder = lambda r: Reply(delay=0.3)
        out: dict[str, Any] = {}
        first = threading.Thread(target=lambda: out.setdefault("first", chat(c, question)))
        first.start()
        deadline = time.monotonic() + 10
        while fake.count("chat") < 2 and time.monotonic() < deadline:  # the first is upstream
            time.sleep(0.005)
        second = threading.Thread(target=lambda: out.setdefault("second", chat(c, question)))
        second.start()
        assert gated.holding.wait(10)  # the second is still embedding ...
        first.join(10)  # ... when the first's answer lands
        c.cache.flush()  # and is written (under load the write-behind can lag the release)
        gated.release.set()
        second.join(10)
        fake.responder = None
        lead, follower = out["first"], out["second"]
        assert lead.cacheback.tier == "upstream" and lead.cacheback.reason is None
        # It reached the cache after the first one's answer was stored: served from the
        # cache, so an exact hit (not a coalesced wait), with the provider's ids.
        assert follower.cacheback_hit is True and follower.cacheback.tier == "exact"
        assert follower.id == lead.id and follower._request_id is None
        # Asked again after the answer landed: an ordinary exact hit.
        later = chat(c, question)
        assert later.cacheback_hit is True and later.cacheback.tier == "exact"
        assert later.cacheback.reason is None
    assert fake.count("chat") == 2


async def test_concurrent_identical_requests_are_all_labelled_coalesced(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        await c.chat.completions.create(model="gpt-4o", messages=user("warm"))
        fake.reset()
        fake.responder = lambda r: Reply(delay=0.3)
        results: list[Any] = []

        async def one() -> None:
            results.append(await c.chat.completions.create(model="gpt-4o", messages=user("All at once")))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
                await anyio.sleep(0.005)  # a few ms apart
        labels = sorted((r.cacheback.tier, r.cacheback.reason or "", r.cacheback_hit) for r in results)
        assert labels == [("upstream", "", False)] + [("upstream", "coalesced", False)] * 3
        assert len({r.id for r in results}) == 1
    assert fake.count("chat") == 1


# --- 8. the async stream helper returns the SDK's manager type ---------------------------------


def test_the_sync_stream_helper_is_a_message_stream_manager(ac: CachedAnthropic) -> None:
    for _ in range(2):  # a miss, then a hit
        manager = ac.messages.stream(model=CLAUDE, max_tokens=64, messages=user("Manager type?"))
        assert isinstance(manager, MessageStreamManager)
        with manager as s:
            s.until_done()
        ac.cache.flush()


async def test_the_async_stream_helper_is_an_async_message_stream_manager(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    async with AsyncCachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        hits = []
        for _ in range(2):  # a miss, then a hit
            manager = c.messages.stream(model=CLAUDE, max_tokens=64, messages=user("Manager type?"))
            assert isinstance(manager, AsyncMessageStreamManager)
            async with manager as s:
                assert isinstance(s, anthropic.AsyncMessageStream)
                text = await s.get_final_text()
                hits.append(s.cacheback_hit)  # type: ignore[attr-defined]
            await c.cache.flush()
        assert hits == [False, True] and text.startswith("Answer to: Manager type?")
    assert fake.count("messages") == 1
