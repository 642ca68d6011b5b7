"""A repeated hit is copied from the object its first replay built: the copy is exactly what
the SDK's ``construct()`` builds (classes, values, extras, set fields), and each caller gets
objects of its own. Real SDK types; the clients over real HTTP to the fake provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _client_helpers import anthropic_args, openai_args, user
from anthropic.types import Message
from fake_provider import FakeProvider
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from cacheback import CachedAnthropic, CachedOpenAI
from cacheback.adapters.providers import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from cacheback.adapters.providers._common import new_id, now
from cacheback.adapters.providers._construct_memo import ConstructMemo, fresh_copy

CHAT = {
    "id": "chatcmpl-memo1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o",
    "system_fingerprint": "fp_memo",
    "a_field_the_sdk_does_not_know": {"nested": [1, {"deep": True}]},
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {"role": "assistant", "content": "Tea.", "refusal": None, "mood": "calm"},
        }
    ],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    },
}

RESPONSE = {
    "id": "resp_memo1",
    "object": "response",
    "created_at": 1700000000.0,
    "model": "gpt-4o",
    "status": "completed",
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "output": [
        {
            "type": "message",
            "id": "msg_memo1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Tea.", "annotations": []}],
        }
    ],
    "usage": {
        "input_tokens": 5,
        "output_tokens": 2,
        "total_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}

MESSAGE = {
    "id": "msg_memo1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Tea."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 2},
}


def same_model(a: Any, b: Any) -> None:
    """Equal, same class, same set fields and extras, at every level; no shared containers."""
    assert type(a) is type(b)
    if hasattr(a, "__pydantic_fields_set__"):
        assert a is not b
        assert a.model_fields_set == b.model_fields_set
        assert a.__pydantic_extra__ == b.__pydantic_extra__
        assert a.__pydantic_private__ == b.__pydantic_private__
        assert a.__dict__.keys() == b.__dict__.keys()
        for name in a.__dict__:
            same_model(a.__dict__[name], b.__dict__[name])
    elif isinstance(a, list | dict):
        assert a == b and a is not b
        pairs = zip(a.values(), b.values(), strict=True) if isinstance(a, dict) else zip(a, b, strict=True)
        for x, y in pairs:
            same_model(x, y)
    else:
        assert a == b


@pytest.mark.parametrize(("cls", "data"), [(ChatCompletion, CHAT), (Response, RESPONSE), (Message, MESSAGE)])
def test_a_copy_is_what_construct_builds(cls: Any, data: dict[str, Any]) -> None:
    built = cls.construct(**json.loads(json.dumps(data)))
    copied = fresh_copy(built)
    same_model(copied, cls.construct(**json.loads(json.dumps(data))))
    assert copied.to_json() == built.to_json()


def test_the_memo_builds_once_and_hands_out_copies() -> None:
    memo = ConstructMemo()
    calls: list[dict[str, Any]] = []

    def make() -> dict[str, Any]:
        data = json.loads(json.dumps(CHAT))
        calls.append(data)
        return data

    first = memo.replay(ChatCompletion.construct, ("Tea.", "gpt-4o"), make)
    second = memo.replay(ChatCompletion.construct, ("Tea.", "gpt-4o"), make)
    assert len(calls) == 1
    same_model(first, second)
    first.choices[0].message.content = "changed"
    calls[0]["choices"][0]["message"]["content"] = "changed too"  # the data it was built from
    third = memo.replay(ChatCompletion.construct, ("Tea.", "gpt-4o"), make)
    assert third.choices[0].message.content == "Tea." and len(calls) == 1
    same_model(third, ChatCompletion.construct(**json.loads(json.dumps(CHAT))))

    def other() -> dict[str, Any]:
        return {**json.loads(json.dumps(CHAT)), "model": "gpt-4o-mini"}

    assert memo.replay(ChatCompletion.construct, ("Tea.", "gpt-4o-mini"), other).model == "gpt-4o-mini"
    assert memo.replay(ChatCompletion.construct, ("Tea.", "gpt-4o"), make).model == "gpt-4o"


def test_a_rebuild_that_draws_a_fresh_id_or_time_is_never_kept() -> None:
    memo = ConstructMemo()

    def fresh_id() -> dict[str, Any]:
        return {**CHAT, "id": new_id("chatcmpl-cb")}

    def fresh_time() -> dict[str, Any]:
        return {**CHAT, "created": now()}

    ids = {memo.replay(ChatCompletion.construct, "same inputs", fresh_id).id for _ in range(3)}
    assert len(ids) == 3
    memo.replay(ChatCompletion.construct, "other inputs", fresh_time)
    assert len(memo) == 0
    memo.replay(ChatCompletion.construct, None, lambda: dict(CHAT))  # no inputs: never kept
    assert len(memo) == 0


def test_the_memo_is_bounded_by_count_and_size() -> None:
    memo = ConstructMemo(max_items=2, max_bytes=10_000)
    for i in range(5):
        memo.replay(ChatCompletion.construct, i, lambda i=i: {**CHAT, "id": f"chatcmpl-{i}"}, size=100)
    assert len(memo) == 2
    huge = {**CHAT, "id": "chatcmpl-huge", "system_fingerprint": "x" * 20_000}
    built = memo.replay(ChatCompletion.construct, "huge", lambda: huge, size=20_100)
    assert built.system_fingerprint == "x" * 20_000
    assert len(memo) == 2  # too large to keep: built every time


@pytest.mark.parametrize(("cls", "data"), [(ChatCompletion, CHAT), (Response, RESPONSE), (Message, MESSAGE)])
def test_replayed_rebuilds_are_what_an_unmemoised_rebuild_gives(cls: Any, data: dict[str, Any]) -> None:
    """The codecs' rebuilds through the memo (``keep_ids``), the first time and after,
    against the same rebuild made without it (a fresh construct of the same wire dict)."""
    rebuild = {ChatCompletion: OPENAI_CHAT, Response: OPENAI_RESPONSES, Message: ANTHROPIC_MESSAGES}[cls]
    payload = json.dumps(data).encode()
    request = {"model": data["model"], "metadata": {"k": "v"}, "user": "u1"}
    wire = rebuild.render("Tea.", payload, data["model"], request, keep_ids=True)
    for _ in range(2):
        hit = rebuild.rebuild("Tea.", payload, data["model"], request, keep_ids=True)
        expected = cls.construct(**json.loads(json.dumps(wire)))
        for name in ("_request_id", "_workspace_id"):  # what the SDK sets per request: None
            if name in hit.__dict__:
                assert hit.__dict__[name] is None
                setattr(expected, name, None)
        same_model(hit, expected)
    if cls is not Message:  # the caller's own echoed values, never the previous caller's
        mine = rebuild.rebuild("Tea.", payload, data["model"], {**request, "user": "u2"}, keep_ids=True)
        assert mine.to_dict().get("user") == rebuild.render(
            "Tea.", payload, data["model"], {**request, "user": "u2"}, keep_ids=True
        ).get("user")


def test_a_caller_changing_its_hit_never_changes_the_next_one(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    with CachedOpenAI(**openai_args(fake, cache_dir, embedder)) as c:
        question = user("Which planet has the shortest year?")
        c.chat.completions.create(model="gpt-4o", messages=question)
        c.cache.flush()
        first = c.chat.completions.create(model="gpt-4o", messages=question)
        assert first.cacheback_hit is True
        answer = first.choices[0].message.content
        first.choices[0].message.content = "overwritten"
        assert first.usage is not None
        first.usage.total_tokens = -1
        second = c.chat.completions.create(model="gpt-4o", messages=question)
        assert second.cacheback_hit is True and second is not first
        assert second.choices[0].message.content == answer
        assert second.usage is not None and second.usage.total_tokens != -1
        assert second._request_id is None


def test_anthropic_hits_are_copies_too(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as c:
        ask = {"model": "claude-sonnet-4-20250514", "max_tokens": 64, "messages": user("Name a noble gas.")}
        c.messages.create(**ask)
        c.cache.flush()
        first = c.messages.create(**ask)
        second = c.messages.create(**ask)
        assert first.cacheback_hit and second.cacheback_hit
        same_model(first.content, second.content)
        assert first.id == second.id  # the provider's message, replayed
