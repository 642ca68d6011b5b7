"""Provider codecs: cache keys, cacheability, rebuilt objects, replayed SDK streams and
stream accumulators, against the real SDKs talking to the fake provider over HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
)
from fake_provider import FakeProvider, Reply, start_fake_provider
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.responses import Response

from cacheback.adapters import providers as p
from cacheback.adapters.providers import (
    CachedAnswer,
    ChatStreamAccumulator,
    MessageStreamAccumulator,
    RequestKey,
    ResponsesStreamAccumulator,
    anthropic_messages_key,
    openai_chat_key,
    openai_responses_key,
)

SYSTEM = {"role": "system", "content": "You are terse."}
USER = {"role": "user", "content": "What is Python?"}
BASE: dict[str, Any] = {"model": "gpt-4o", "messages": [SYSTEM, USER], "temperature": 0.2}
ANT: dict[str, Any] = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 256,
    "system": "You are terse.",
    "messages": [USER],
}


def chat(**changes: Any) -> RequestKey:
    return openai_chat_key({**BASE, **changes})


# --- scope and query -----------------------------------------------------------------------


def test_chat_key_basics() -> None:
    key = chat()
    assert key.query == "What is Python?"
    assert key.cacheable and key.semantic and key.reason == "ok"
    assert key.scope.startswith("openai.chat:gpt-4o:")
    request = key.lookup_request(namespace="tenant-a")
    assert (request.query, request.scope, request.namespace) == (key.query, key.scope, "tenant-a")
    assert request.cacheable and request.semantic and request.bypass_reason is None


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "gpt-4o-mini"},
        {"messages": [{"role": "system", "content": "You are verbose."}, USER]},
        {"messages": [{"role": "developer", "content": "You are terse."}, USER]},
        {
            "messages": [
                SYSTEM,
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                USER,
            ]
        },
        {"temperature": 0.9},
        {"top_p": 0.5},
        {"seed": 7},
        {"stop": ["\n"]},
        {"max_tokens": 10},
        {"max_completion_tokens": 10},
        {"reasoning_effort": "high"},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"tool_choice": "none"},
        {"logit_bias": {"50256": -100}},
        {"extra_body": {"temperature": 0.7}},
        {"extra_headers": {"OpenAI-Beta": "assistants=v2"}},
        {"some_future_param": 1},
    ],
)
def test_chat_scope_changes_with_what_changes_the_answer(changes: dict[str, Any]) -> None:
    assert chat(**changes).scope != chat().scope
    assert chat(**changes).query == "What is Python?"


@pytest.mark.parametrize(
    "changes",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"timeout": 3.0},
        {"metadata": {"user": "alice"}},
        {"user": "alice"},
        {"store": True},
        {"service_tier": "flex"},
        {"prompt_cache_key": "k"},
        {"safety_identifier": "s"},
        {"extra_headers": {"X-Trace": "1"}},
        {"extra_query": {"a": "b"}},
        {"n": 1},
        {"seed": None},
        {"seed": openai.omit},
        {"temperature": 0.2000},
        {"messages": [SYSTEM, {"role": "user", "content": [{"type": "text", "text": "What is Python?"}]}]},
    ],
)
def test_chat_scope_ignores_transport_and_spelling(changes: dict[str, Any]) -> None:
    assert chat(**changes).scope == chat().scope


def test_scope_is_independent_of_key_order() -> None:
    reordered = {
        "temperature": 0.2,
        "messages": [
            {"content": "You are terse.", "role": "system"},
            {"content": "What is Python?", "role": "user"},
        ],
        "response_format": {"json_schema": {"schema": {"b": 1, "a": 2}, "name": "x"}, "type": "json_schema"},
        "model": "gpt-4o",
    }
    original = {
        **BASE,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"a": 2, "b": 1}}},
    }
    assert openai_chat_key(reordered).scope == openai_chat_key(original).scope
    assert chat(temperature=1).scope == chat(temperature=1.0).scope


def test_query_is_last_user_message_and_earlier_turns_go_to_scope() -> None:
    history = [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, USER]
    key = chat(messages=history)
    assert key.query == "What is Python?" and key.semantic
    # The same earlier turn as an SDK object (appended from a previous response) or a dict.
    sdk_turn = ChatCompletionMessage.construct(
        role="assistant", content="Hello!", refusal=None, annotations=[]
    )
    assert chat(messages=[*history[:2], sdk_turn, USER]).scope == key.scope
    # Only the matched text leaves the scope: the question is not part of it.
    assert chat(messages=[*history[:3], {"role": "user", "content": "Explain Python"}]).scope == key.scope


def test_ignore_params() -> None:
    loose = openai_chat_key({**BASE, "temperature": 0.9}, ignore_params=["temperature"])
    assert loose.scope == openai_chat_key(BASE, ignore_params=["temperature"]).scope
    # The conversation itself cannot be ignored.
    other = openai_chat_key({**BASE, "messages": [USER]}, ignore_params=["messages"])
    assert other.scope != openai_chat_key(BASE, ignore_params=["messages"]).scope


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_chat_cacheability_rules() -> None:
    assert chat(n=2).cacheable is False and chat(n=2).reason == "n>1"
    image_msg = {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}
    keyed = chat(messages=[image_msg])
    assert keyed.cacheable and keyed.semantic and keyed.query == "What is this?"
    assert keyed.modality == "image" and keyed.media[0].data == b"\x00\x00\x00"
    refused = openai_chat_key({**BASE, "messages": [image_msg]}, allow_media=False)
    assert not refused.cacheable and "image_url" in refused.reason
    other_image = {**IMAGE, "image_url": {"url": "data:image/png;base64,BBBB"}}
    other = chat(messages=[{**image_msg, "content": [image_msg["content"][0], other_image]}])
    assert other.scope != keyed.scope
    audio_msg = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}}],
    }
    bad_audio = chat(messages=[audio_msg])
    assert not bad_audio.cacheable and "base64" in bad_audio.reason
    assert not chat(modalities=["text", "audio"]).cacheable
    tools = chat(tools=[{"type": "function", "function": {"name": "f"}}])
    assert tools.cacheable and not tools.semantic and "tools" in tools.reason
    after_tool = chat(
        messages=[
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    )
    assert after_tool.cacheable and not after_tool.semantic and after_tool.query == "What is Python?"
    assert not chat(messages=[SYSTEM]).cacheable
    assert not chat(messages=[{"role": "user", "content": "   "}]).cacheable
    one_shot = chat(messages=iter([USER]))
    assert not one_shot.cacheable and "not a list" in one_shot.reason
    assert not chat(temperature=float("nan")).cacheable


def test_responses_keys() -> None:
    base = {"model": "gpt-4o", "input": "What is Python?", "instructions": "Be brief."}
    key = openai_responses_key(base)
    assert key.query == "What is Python?" and key.semantic and key.scope.startswith("openai.responses:")
    same = [
        {**base, "input": [{"role": "user", "content": "What is Python?"}]},
        {
            **base,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is Python?"}],
                }
            ],
        },
        {**base, "stream": True, "store": False, "metadata": {"a": "b"}, "background": False},
    ]
    assert all(openai_responses_key(s).scope == key.scope for s in same)
    different = [
        {**base, "instructions": "Be long."},
        {**base, "model": "o3"},
        {**base, "reasoning": {"effort": "high"}},
        {**base, "max_output_tokens": 50},
        {**base, "text": {"format": {"type": "json_object"}}},
        {**base, "previous_response_id": "resp_1"},
        {
            **base,
            "input": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Yo"},
                {"role": "user", "content": "What is Python?"},
            ],
        },
    ]
    assert len({openai_responses_key(d).scope for d in different} | {key.scope}) == len(different) + 1
    assert not openai_responses_key({**base, "conversation": "conv_1"}).cacheable
    assert not openai_responses_key({**base, "background": True}).cacheable
    assert not openai_responses_key({**base, "response_id": "resp_1", "starting_after": 3}).cacheable
    tooled = openai_responses_key({**base, "tools": [{"type": "web_search"}]})
    assert tooled.cacheable and not tooled.semantic
    after_call = openai_responses_key(
        {
            **base,
            "input": [
                {"role": "user", "content": "q"},
                {"type": "function_call_output", "call_id": "c", "output": "1"},
            ],
        }
    )
    assert after_call.cacheable and not after_call.semantic and after_call.query == "q"
    image = {"type": "input_image", "image_url": "https://example.com/x.png"}
    with_image = {
        **base,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "q"}, image]}],
    }
    keyed = openai_responses_key(with_image)
    assert keyed.cacheable and keyed.media[0].digest == "url:https://example.com/x.png"
    assert not openai_responses_key(with_image, allow_media=False).cacheable


def test_anthropic_keys() -> None:
    key = anthropic_messages_key(ANT)
    assert key.query == "What is Python?" and key.semantic and key.scope.startswith("anthropic.messages:")
    same = [
        {
            **ANT,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        },
        {**ANT, "stream": True, "metadata": {"user_id": "u"}, "service_tier": "auto", "timeout": 5},
        {**ANT, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is Python?"}]}]},
        {**ANT, "cache_control": {"type": "ephemeral"}},
        {
            "messages": [USER],
            "system": "You are terse.",
            "max_tokens": 256,
            "model": "claude-sonnet-4-20250514",
        },
    ]
    assert all(anthropic_messages_key(s).scope == key.scope for s in same)
    different = [
        {**ANT, "system": "Be long."},
        {**ANT, "max_tokens": 1024},
        {**ANT, "thinking": {"type": "enabled", "budget_tokens": 2048}},
        {**ANT, "stop_sequences": ["END"]},
        {**ANT, "output_config": {"effort": "low"}},
        {**ANT, "extra_body": {"temperature": 0.1}},
        {**ANT, "extra_headers": {"anthropic-beta": "some-feature"}},
        {**ANT, "model": "claude-haiku-4-5"},
    ]
    assert len({anthropic_messages_key(d).scope for d in different} | {key.scope}) == len(different) + 1
    prefill = anthropic_messages_key(
        {**ANT, "messages": [USER, {"role": "assistant", "content": "The answer is"}]}
    )
    assert prefill.cacheable and not prefill.semantic and "prefill" in prefill.reason
    tool_turns = [
        USER,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]},
    ]
    tool_result = anthropic_messages_key({**ANT, "messages": tool_turns})
    assert tool_result.cacheable and not tool_result.semantic and tool_result.query == "What is Python?"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    pic = {**ANT, "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}]}
    assert anthropic_messages_key(pic).query == "What is it?" and anthropic_messages_key(pic).semantic
    assert not anthropic_messages_key(pic, allow_media=False).cacheable
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    assert not anthropic_messages_key({**ANT, "messages": [{"role": "user", "content": [doc]}]}).cacheable
    tooled = anthropic_messages_key({**ANT, "tools": [{"name": "f", "input_schema": {"type": "object"}}]})
    assert tooled.cacheable and not tooled.semantic


def test_providers_and_apis_never_share_scopes() -> None:
    chat_key = openai_chat_key({"model": "m", "messages": [USER]})
    responses_key = openai_responses_key({"model": "m", "input": [USER]})
    anthropic_key = anthropic_messages_key({"model": "m", "messages": [USER]})
    assert len({chat_key.scope, responses_key.scope, anthropic_key.scope}) == 3


# --- cacheability of responses -------------------------------------------------------------


def test_chat_verdicts_on_live_responses(fake: FakeProvider, oai: openai.OpenAI) -> None:
    good = oai.chat.completions.create(model="gpt-4o", messages=[USER])
    assert p.is_cacheable_response(good)
    answer = p.to_cached_answer(good)
    assert answer is not None and answer.text == good.choices[0].message.content
    assert json.loads(answer.payload)["id"] == good.id
    fake.script(
        Reply(finish_reason="length"),
        Reply(finish_reason="content_filter"),
        Reply(refusal="I can't."),
        Reply(tool_call=("f", {})),
        Reply(text="   "),
        endpoint="chat",
    )
    reasons = [
        p.is_cacheable_response(oai.chat.completions.create(model="m", messages=[USER])).reason
        for _ in range(5)
    ]
    assert reasons == [
        "finish_reason length",
        "finish_reason content_filter",
        "refusal",
        "tool call",
        "empty answer",
    ]
    assert (
        p.is_cacheable_response(oai.chat.completions.create(model="m", messages=[USER], n=2)).reason
        == "several choices"
    )
    assert p.to_cached_answer({"error": {"message": "x"}}) is None


def test_responses_and_messages_verdicts(
    fake: FakeProvider, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    assert p.is_cacheable_response(oai.responses.create(model="m", input="q"))
    assert p.is_cacheable_response(ant.messages.create(model="c", max_tokens=9, messages=[USER]))
    fake.script(
        Reply(finish_reason="length"), Reply(refusal="no"), Reply(tool_call=("f", {})), endpoint="responses"
    )
    reasons = [p.is_cacheable_response(oai.responses.create(model="m", input="q")).reason for _ in range(3)]
    assert reasons == ["status incomplete", "refusal", "output item function_call"]
    fake.script(
        Reply(finish_reason="max_tokens"),
        Reply(refusal="no"),
        Reply(tool_call=("f", {})),
        endpoint="messages",
    )
    reasons = [
        p.is_cacheable_response(ant.messages.create(model="c", max_tokens=9, messages=[USER])).reason
        for _ in range(3)
    ]
    assert reasons == ["stop_reason max_tokens", "stop_reason refusal", "stop_reason tool_use"]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
    assert not p.is_cacheable_response(error)


# --- rebuilt objects -----------------------------------------------------------------------


def test_rebuilt_chat_completion_round_trips(oai: openai.OpenAI) -> None:
    live = oai.chat.completions.create(model="gpt-4o", messages=[USER])
    answer = p.chat_answer(live)
    hit = p.rebuild_chat_completion(answer.text, answer.payload, model="gpt-4o-2024-08-06")
    assert isinstance(hit, ChatCompletion)
    assert hit.id != live.id and hit.id.startswith("chatcmpl-") and hit.created >= live.created
    assert hit.model == "gpt-4o-2024-08-06"
    assert hit.choices[0].message.content == live.choices[0].message.content
    assert hit.usage == live.usage and hit.system_fingerprint == live.system_fingerprint
    # Through JSON and back, as the proxy or a second cache layer would.
    again = ChatCompletion.model_validate_json(hit.model_dump_json())
    assert again == hit and p.chat_answer(again).text == answer.text
    # A synthesised answer (no payload) or a payload with other text: minimal completion.
    bare = p.rebuild_chat_completion("Fresh text.", answer.payload, model="gpt-4o")
    assert bare.choices[0].message.content == "Fresh text." and bare.choices[0].finish_reason == "stop"
    assert bare.usage is not None and bare.usage.total_tokens == 0
    assert p.chat_verdict(bare)


def test_rebuilt_objects_echo_the_caller_not_the_original(oai: openai.OpenAI) -> None:
    live = oai.responses.create(model="gpt-4o", input="q", metadata={"owner": "alice"}, user="alice")
    assert live.metadata == {"owner": "alice"}
    answer = p.responses_answer(live)
    hit = p.rebuild_response(
        answer.text, answer.payload, model="gpt-4o", request={"metadata": {"owner": "bob"}}
    )
    assert isinstance(hit, Response) and hit.output_text == live.output_text
    assert hit.metadata == {"owner": "bob"} and hit.user is None
    assert hit.id != live.id and hit.output[0].id != live.output[0].id
    assert p.responses_verdict(hit)
    synthesized = p.rebuild_response("Made up.", None, model="o3", request={"instructions": "Be brief."})
    assert synthesized.output_text == "Made up." and synthesized.status == "completed"
    assert synthesized.instructions == "Be brief." and synthesized.model == "o3"


def test_rebuilt_message_round_trips(ant: anthropic.Anthropic) -> None:
    live = ant.messages.create(model="claude-x", max_tokens=99, messages=[USER])
    answer = p.message_answer(live)
    hit = p.rebuild_message(answer.text, answer.payload, model="claude-y")
    assert isinstance(hit, Message) and hit.model == "claude-y" and hit.id != live.id
    assert hit.content == live.content and hit.usage == live.usage and hit.stop_reason == "end_turn"
    assert Message.model_validate_json(hit.model_dump_json()) == hit
    bare = p.rebuild_message("Only text.", None, model="claude-y")
    assert bare.content[0].text == "Only text." and p.message_verdict(bare)  # type: ignore[union-attr]


# --- replayed streams through the SDKs' own stream classes ---------------------------------

TEXT = "Python is a programming language. It is known for readability, and its many libraries."


def _skeleton(kinds: list[str]) -> list[str]:
    """Event kinds with runs of repeats collapsed (live and replay chunk differently)."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


def test_chat_replay_stream_is_an_sdk_stream(oai: openai.OpenAI) -> None:
    completion = p.rebuild_chat_completion(TEXT, model="gpt-4o")
    stream = p.replay_chat_stream(oai, completion, include_usage=True)
    assert isinstance(stream, openai.Stream)
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    with stream:
        chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert {c.id for c in chunks} == {completion.id} and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == completion.usage
    assert stream.response.is_closed
    typed = p.chat_chunks(completion, include_usage=True)
    assert [c.model_dump() for c in typed] == [c.model_dump() for c in chunks]


def test_chat_replay_matches_a_live_stream(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(text=TEXT))
    live = list(
        oai.chat.completions.create(
            model="m", messages=[USER], stream=True, stream_options={"include_usage": True}
        )
    )
    replay = list(p.replay_chat_stream(oai, p.rebuild_chat_completion(TEXT, model="m"), include_usage=True))

    def shape(chunks: list[ChatCompletionChunk]) -> list[tuple[Any, ...]]:
        return _skeleton(
            [
                repr(
                    (bool(c.choices), c.choices[0].delta.role, c.choices[0].finish_reason)
                    if c.choices
                    else "usage"
                )
                for c in chunks
            ]
        )

    assert shape(live) == shape(replay)
    assert "".join(c.choices[0].delta.content or "" for c in replay if c.choices) == TEXT


def test_chat_replay_can_be_closed_early(oai: openai.OpenAI) -> None:
    stream = p.replay_chat_stream(oai, p.rebuild_chat_completion(TEXT, model="m"), chunk_chars=4)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    assert stream.response.is_closed
    assert list(stream) == []


def test_async_chat_replay(fake: FakeProvider) -> None:
    async def run() -> tuple[str, bool]:
        async with fake.async_openai() as client:
            stream = p.replay_chat_stream(client, p.rebuild_chat_completion(TEXT, model="m"))
            assert isinstance(stream, openai.AsyncStream)
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return text, stream.response.is_closed

    assert asyncio.run(run()) == (TEXT, True)


def test_responses_replay_matches_a_live_stream(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(text=TEXT), Reply(text=TEXT))
    live = list(oai.responses.create(model="m", input="q", stream=True))
    answer = p.responses_answer(oai.responses.create(model="m", input="q"))
    hit = p.rebuild_response(answer.text, answer.payload, model="m")
    stream = p.replay_responses_stream(oai, hit)
    assert isinstance(stream, openai.Stream)
    with stream:
        replay = list(stream)
    assert _skeleton([e.type for e in live]) == _skeleton([e.type for e in replay])
    assert "".join(e.delta for e in replay if e.type == "response.output_text.delta") == TEXT
    assert replay[-1].type == "response.completed" and replay[-1].response.output_text == TEXT
    assert replay[-1].response.id == hit.id
    assert [e.sequence_number for e in replay] == list(range(len(replay)))
    assert [e.model_dump() for e in p.response_events(hit)] == [e.model_dump() for e in replay]


def test_messages_replay_matches_a_live_stream(fake: FakeProvider, ant: anthropic.Anthropic) -> None:
    fake.script(Reply(text=TEXT), endpoint="messages")
    live = list(ant.messages.create(model="c", max_tokens=99, messages=[USER], stream=True))
    hit = p.rebuild_message(TEXT, None, model="c")
    stream = p.replay_message_stream(ant, hit)
    assert isinstance(stream, anthropic.Stream)
    with stream:
        replay: list[RawMessageStreamEvent] = list(stream)
    assert _skeleton([e.type for e in live]) == _skeleton([e.type for e in replay])
    assert (
        "".join(
            e.delta.text for e in replay if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
        == TEXT
    )
    assert [e.model_dump() for e in p.message_events(hit)] == [e.model_dump() for e in replay]


def test_message_stream_helper_replay(ant: anthropic.Anthropic) -> None:
    hit = p.rebuild_message(TEXT, None, model="claude-x")
    seen: list[object] = []
    manager = p.replay_message_stream_manager(
        ant, hit, on_enter=lambda s: seen.append(p.mark(s, True, False, {"tier": "exact"}))
    )
    assert isinstance(manager, anthropic.MessageStreamManager)
    with manager as stream:
        assert isinstance(stream, anthropic.MessageStream)
        assert "".join(stream.text_stream) == TEXT
        final = stream.get_final_message()
    assert final.content[0].text == TEXT and final.id == hit.id  # type: ignore[union-attr]
    assert seen == [stream] and stream.cacheback_hit is True  # type: ignore[attr-defined]
    assert stream.response.is_closed


def test_async_message_stream_helper_replay(fake: FakeProvider) -> None:
    async def run() -> str:
        async with fake.async_anthropic() as client:
            raw = p.replay_message_stream(client, p.rebuild_message(TEXT, None, model="c"))
            assert isinstance(raw, anthropic.AsyncStream)
            assert [e.type async for e in raw][-1] == "message_stop"
            manager = p.replay_message_stream_manager(client, p.rebuild_message(TEXT, None, model="c"))
            async with manager as stream:
                text = "".join([t async for t in stream.text_stream])
                assert (await stream.get_final_message()).stop_reason == "end_turn"
            return text

    assert asyncio.run(run()) == TEXT


def test_unentered_async_manager_leaves_no_warning(fake: FakeProvider) -> None:
    async def run() -> None:
        async with fake.async_anthropic() as client:
            p.replay_message_stream_manager(client, p.rebuild_message(TEXT, None, model="c"))

    asyncio.run(run())  # warnings are errors: an un-awaited coroutine would fail here


def test_openai_stream_helper_replays(fake: FakeProvider, oai: openai.OpenAI) -> None:
    completion = p.rebuild_chat_completion(TEXT, model="m")
    with p.replay_chat_stream_manager(oai, completion) as chat_stream:
        kinds = [event.type for event in chat_stream]
        final = chat_stream.get_final_completion()
    assert "content.delta" in kinds and final.choices[0].message.content == TEXT
    response = p.rebuild_response(TEXT, model="m")
    with p.replay_responses_stream_manager(oai, response) as responses_stream:
        assert responses_stream.get_final_response().output_text == TEXT

    async def run() -> tuple[str, str]:
        async with fake.async_openai() as client:
            async with p.replay_chat_stream_manager(client, completion) as stream:
                chat = (await stream.get_final_completion()).choices[0].message.content or ""
            async with p.replay_responses_stream_manager(client, response) as rstream:
                text = (await rstream.get_final_response()).output_text
            p.replay_responses_stream_manager(client, response)  # never entered: no warning
            return chat, text

    assert asyncio.run(run()) == (TEXT, TEXT)


# --- accumulators on live streams ----------------------------------------------------------


def _accumulate(acc: Any, events: Any) -> tuple[CachedAnswer | None, p.Verdict]:
    for event in events:
        acc.feed(event)
    result: tuple[CachedAnswer | None, p.Verdict] = acc.finish()
    return result


def test_chat_accumulator_on_live_stream(fake: FakeProvider, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=[USER], stream=True, stream_options={"include_usage": True}
    )
    answer, verdict = _accumulate(ChatStreamAccumulator(), stream)
    assert verdict and answer is not None
    assert answer.text == "Answer to: What is Python? [gpt-4o]"
    rebuilt = p.rebuild_chat_completion(answer.text, answer.payload, model="gpt-4o")
    assert rebuilt.usage is not None and rebuilt.usage.completion_tokens > 0
    assert rebuilt.system_fingerprint == "fp_fake" and rebuilt.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(finish_reason="length"), "finish_reason length"),
        (Reply(refusal="No."), "refusal"),
        (Reply(tool_call=("f", {"x": 1})), "tool call"),
    ],
)
def test_chat_accumulator_rejects(fake: FakeProvider, oai: openai.OpenAI, reply: Reply, reason: str) -> None:
    fake.script(reply)
    answer, verdict = _accumulate(
        ChatStreamAccumulator(), oai.chat.completions.create(model="m", messages=[USER], stream=True)
    )
    assert answer is None and verdict.reason == reason


def test_chat_accumulator_on_broken_and_partial_streams(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(stream_error_after=2))
    acc = ChatStreamAccumulator()
    with pytest.raises(openai.APIError):
        for chunk in oai.chat.completions.create(model="m", messages=[USER], stream=True):
            acc.feed(chunk)
    acc.fail("stream raised")
    assert acc.text == "Answer to: " and acc.finish() == (None, p.Verdict(False, "stream raised"))
    partial = ChatStreamAccumulator()
    for chunk in list(oai.chat.completions.create(model="m", messages=[USER], stream=True))[:3]:
        partial.feed(chunk)
    assert partial.finish()[1].reason == "stream ended early"


def test_responses_accumulator(fake: FakeProvider, oai: openai.OpenAI) -> None:
    answer, verdict = _accumulate(
        ResponsesStreamAccumulator(), oai.responses.create(model="m", input="q", stream=True)
    )
    assert verdict and answer is not None and answer.text == "Answer to: q [m]"
    assert p.rebuild_response(answer.text, answer.payload, model="m").output_text == answer.text
    fake.script(Reply(finish_reason="length"), Reply(stream_error_after=1), endpoint="responses")
    for reason in ("response.incomplete", "error event: stream broke"):
        answer, verdict = _accumulate(
            ResponsesStreamAccumulator(), oai.responses.create(model="m", input="q", stream=True)
        )
        assert answer is None and verdict.reason == reason


def test_responses_accumulator_under_the_stream_helper(oai: openai.OpenAI) -> None:
    acc = ResponsesStreamAccumulator()
    with oai.responses.stream(model="m", input="q") as stream:
        for event in stream:
            acc.feed(event)
    answer, verdict = acc.finish()
    assert verdict and answer is not None and answer.text == "Answer to: q [m]"


def test_anthropic_accumulator_raw_and_helper(fake: FakeProvider, ant: anthropic.Anthropic) -> None:
    raw = ant.messages.create(model="c", max_tokens=9, messages=[USER], stream=True)
    answer, verdict = _accumulate(MessageStreamAccumulator(), raw)
    assert verdict and answer is not None and answer.text == "Answer to: What is Python? [c]"
    message = p.rebuild_message(answer.text, answer.payload, model="c")
    assert message.usage.output_tokens > 1 and message.usage.input_tokens > 0
    acc = MessageStreamAccumulator()
    with ant.messages.stream(model="c", max_tokens=9, messages=[USER]) as stream:
        for event in stream:
            acc.feed(event)
    helper_answer, _ = acc.finish()
    assert helper_answer is not None and helper_answer.text == answer.text
    fake.script(Reply(finish_reason="length"), Reply(tool_call=("f", {"city": "Paris"})), endpoint="messages")
    for reason in ("stop_reason max_tokens", "stop_reason tool_use"):
        acc = MessageStreamAccumulator()
        answer, verdict = _accumulate(
            acc, ant.messages.create(model="c", max_tokens=9, messages=[USER], stream=True)
        )
        assert answer is None and verdict.reason == reason
    assert acc.message() is not None and acc.message()["content"][0]["input"] == {"city": "Paris"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("replay", "accumulator"),
    [
        (
            lambda c, a: p.replay_chat_stream(c[0], p.rebuild_chat_completion(TEXT, model="m")),
            ChatStreamAccumulator,
        ),
        (
            lambda c, a: p.replay_responses_stream(c[0], p.rebuild_response(TEXT, model="m")),
            ResponsesStreamAccumulator,
        ),
        (
            lambda c, a: p.replay_message_stream(c[1], p.rebuild_message(TEXT, model="m")),
            MessageStreamAccumulator,
        ),
    ],
)
def test_accumulating_a_replay_gives_the_answer_back(
    oai: openai.OpenAI,
    ant: anthropic.Anthropic,
    replay: Callable[[tuple[openai.OpenAI, anthropic.Anthropic], None], Any],
    accumulator: Callable[[], Any],
) -> None:
    answer, verdict = _accumulate(accumulator(), replay((oai, ant), None))
    assert verdict and answer is not None and answer.text == TEXT


# --- marks ---------------------------------------------------------------------------------


def test_mark_sets_attributes_without_touching_serialisation(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="m", messages=[USER])
    before = completion.to_json()
    marked = p.mark(completion, False, False, {"tier": "upstream", "latency_ms": 3.5, "scope": "s"})
    assert marked is completion
    assert completion.cacheback_hit is False and completion.cacheback_synthesized is False  # type: ignore[attr-defined]
    info = completion.cacheback  # type: ignore[attr-defined]
    assert info.tier == "upstream" and info.latency_ms == 3.5 and info.extra == {"scope": "s"}
    assert info.as_dict()["scope"] == "s"
    assert completion.to_json() == before and "cacheback_hit" not in completion.model_dump()
    assert copy.deepcopy(completion).cacheback_hit is False  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(completion)).cacheback.tier == "upstream"
    stream = p.replay_chat_stream(oai, p.rebuild_chat_completion(TEXT, model="m"))
    assert p.mark(stream, True, False).cacheback_hit is True  # type: ignore[attr-defined]
    stream.close()


def test_split_text_is_lossless() -> None:
    for text in ["", "one", "  leading and trailing  ", "a\n\nb\tc " * 20, "x" * 100]:
        pieces = p.split_text(text, 8)
        assert "".join(pieces) == text and all(pieces)


def test_fresh_server_per_block() -> None:
    with start_fake_provider(answer=lambda q, m: f"{m}:{q}") as fake, fake.openai() as client:
        assert (
            client.chat.completions.create(model="m", messages=[USER]).choices[0].message.content
            == "m:What is Python?"
        )


def test_package_imports_sdks_lazily() -> None:
    # Installing one SDK extra must be enough: keys and verdicts import neither SDK.
    import subprocess
    import sys

    code = (
        "import sys; import cacheback.adapters.providers as p;"
        "p.openai_chat_key({'model': 'm', 'messages': [{'role': 'user', 'content': 'q'}]});"
        "p.anthropic_messages_key({'model': 'm', 'messages': [{'role': 'user', 'content': 'q'}]});"
        "assert 'openai' not in sys.modules and 'anthropic' not in sys.modules;"
        "p.ANTHROPIC_MESSAGES.rebuild('x');"
        "assert 'anthropic' in sys.modules and 'openai' not in sys.modules;"
        "p.rebuild_message; assert 'openai' not in sys.modules"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


# --- one codec per API, round trip: request → key, response → answer/usage, answer → SDK ---


def _merged_usage(codec: p.Codec, events: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {}
    for event in events:
        usage.update(codec.event_usage(event))
    return usage


def _check_stream(codec: p.Codec, events: list[Any], answer: CachedAnswer, usage: dict[str, Any]) -> None:
    """A live stream's events give the non-stream call's usage and answer."""
    assert _merged_usage(codec, events) == usage
    acc = codec.accumulator()
    for event in events:
        acc.feed(event)
    streamed, verdict = acc.finish()
    assert verdict and streamed is not None and streamed.text == answer.text


def test_openai_chat_codec_round_trip(oai: openai.OpenAI) -> None:
    codec = p.OPENAI_CHAT
    kwargs = {**BASE, "stream_options": {"include_usage": True}}
    key = codec.key(kwargs)
    # The proxy reads the same request as a JSON body: the same key.
    assert codec.key(json.loads(json.dumps(kwargs))) == key
    assert key.query == "What is Python?" and key.cacheable and key.semantic
    assert key.scope.startswith("openai.chat:gpt-4o:") and codec.label == "openai.chat"

    live = oai.chat.completions.create(**BASE)
    assert live.usage is not None
    assert codec.text(live) == live.choices[0].message.content and codec.finish_reason(live) == "stop"
    usage = {
        "input_tokens": live.usage.prompt_tokens,
        "output_tokens": live.usage.completion_tokens,
        "model": live.model,
    }
    assert usage["output_tokens"] > 0
    assert codec.usage(live) == usage == codec.usage(live.model_dump(mode="json"))
    answer = codec.answer(live)
    assert answer is not None and answer.text == codec.text(live)

    chunks = list(oai.chat.completions.create(**kwargs, stream=True))
    _check_stream(codec, chunks, answer, usage)

    data = codec.render(answer.text, answer.payload, "gpt-4o", kwargs, keep_ids=True)
    parsed = ChatCompletion.model_validate(data)  # the SDK's own validating parse
    assert parsed.id == live.id and parsed.choices[0].message.content == answer.text
    assert codec.usage(parsed) == usage
    assert isinstance(codec.rebuild(answer.text, answer.payload, "gpt-4o", kwargs), ChatCompletion)
    stream_key = codec.key({**kwargs, "stream": True})
    assert stream_key.stream_usage and stream_key.scope == key.scope
    replay = list(codec.replay(oai, parsed, stream_key.stream_usage))
    assert all(isinstance(c, ChatCompletionChunk) for c in replay)
    assert "".join(c.choices[0].delta.content or "" for c in replay if c.choices) == answer.text
    assert _merged_usage(codec, replay) == usage and replay[-2].choices[0].finish_reason == "stop"
    assert codec.sse(data, True).endswith(b"data: [DONE]\n\n")


def test_openai_responses_codec_round_trip(oai: openai.OpenAI) -> None:
    codec = p.OPENAI_RESPONSES
    kwargs: dict[str, Any] = {"model": "gpt-4o", "instructions": "Be terse.", "input": "What is Python?"}
    key = codec.key(kwargs)
    assert key.query == "What is Python?" and key.cacheable and key.semantic
    assert key.scope.startswith("openai.responses:gpt-4o:") and key != p.OPENAI_CHAT.key(BASE)

    live = oai.responses.create(**kwargs)
    assert live.usage is not None
    assert codec.text(live) == live.output_text and codec.finish_reason(live) == "completed"
    usage = {
        "input_tokens": live.usage.input_tokens,
        "output_tokens": live.usage.output_tokens,
        "model": live.model,
    }
    assert codec.usage(live) == usage == codec.usage(live.model_dump(mode="json"))
    answer = codec.answer(live)
    assert answer is not None and answer.text == live.output_text

    events = list(oai.responses.create(**kwargs, stream=True))
    _check_stream(codec, events, answer, usage)

    data = codec.render(answer.text, answer.payload, "gpt-4o", kwargs, keep_ids=True)
    parsed = Response.model_validate(data)
    assert parsed.id == live.id and parsed.output_text == answer.text and codec.usage(parsed) == usage
    replay = list(codec.replay(oai, parsed))
    assert replay[-1].type == "response.completed"
    assert "".join(e.delta for e in replay if e.type == "response.output_text.delta") == answer.text
    assert _merged_usage(codec, replay) == usage
    assert codec.sse(data).startswith(b"event: response.created\ndata: ")


def test_anthropic_messages_codec_round_trip(ant: anthropic.Anthropic) -> None:
    codec = p.ANTHROPIC_MESSAGES
    key = codec.key(ANT)
    assert codec.key(json.loads(json.dumps(ANT))) == key
    assert key.query == "What is Python?" and key.cacheable and key.semantic
    assert key.scope.startswith("anthropic.messages:claude-sonnet-4-20250514:")

    live = ant.messages.create(**ANT)
    assert codec.text(live) == live.content[0].text
    assert codec.finish_reason(live) == "end_turn"
    usage = {
        "input_tokens": live.usage.input_tokens,
        "output_tokens": live.usage.output_tokens,
        "model": live.model,
    }
    assert codec.usage(live) == usage == codec.usage(live.model_dump(mode="json"))
    answer = codec.answer(live)
    assert answer is not None and answer.text == codec.text(live)

    events = list(ant.messages.create(**ANT, stream=True))
    # message_start says the model and input count, message_delta the final output count.
    _check_stream(codec, events, answer, usage)

    data = codec.render(answer.text, answer.payload, ANT["model"], ANT, keep_ids=True)
    parsed = Message.model_validate(data)
    assert parsed.id == live.id and parsed.content == live.content and codec.usage(parsed) == usage
    replay = list(codec.replay(ant, parsed))
    assert isinstance(replay[0], RawMessageStartEvent) and isinstance(replay[-1], RawMessageStopEvent)
    deltas = [e.delta for e in replay if isinstance(e, RawContentBlockDeltaEvent)]
    text = "".join(d.text for d in deltas if d.type == "text_delta")
    assert text == answer.text and _merged_usage(codec, replay) == usage
    assert codec.sse(data).endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_codecs_read_usage_piecemeal_and_survive_malformed_usage() -> None:
    chat = p.OPENAI_CHAT
    assert chat.usage({"model": "m"}) == {"model": "m"}
    assert chat.usage({"usage": {"prompt_tokens": "x", "completion_tokens": 3}}) == {"output_tokens": 3}
    assert chat.event_usage({"model": "m", "choices": [], "usage": None}) == {"model": "m"}
    assert p.OPENAI_RESPONSES.event_usage({"type": "response.output_text.delta", "delta": "a"}) == {}
    start = {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": 5}}}
    delta = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}
    assert _merged_usage(p.ANTHROPIC_MESSAGES, [start, delta]) == {
        "model": "c",
        "input_tokens": 5,
        "output_tokens": 7,
    }


@pytest.mark.anyio
async def test_proxy_synthesis_stream_frames_live_deltas_and_a_break() -> None:
    # The proxy streams a synthesis in the live framing the clients use (providers/_live.py).
    from cacheback.adapters.proxy._synthesis import MARKER, SynthesisStream

    codec = p.OPENAI_RESPONSES
    template = codec.events(codec.render(MARKER, None, "gpt-4o", {}))

    async def deltas() -> Any:
        yield "Hello "
        yield "world"
        raise RuntimeError("the cheap model went away")

    body = b"".join([chunk async for chunk in SynthesisStream(codec, template, deltas()).chunks()])
    events = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hello ", "world"]
    assert events[-1]["type"] == "error" and events[-1]["message"] == "The answer stream broke."
    assert [e["sequence_number"] for e in events[:-1]] == list(range(len(events) - 1))
    assert "response.completed" not in {e["type"] for e in events}
