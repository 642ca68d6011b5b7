"""A repeated request gets the key it got before, and every request gets the key its codec
gives it: values equal in Python but not the same request (1, 1.0, True; a list and a
tuple) never share a kept key."""

from __future__ import annotations

import base64
from typing import Any

from openai import NOT_GIVEN
from openai.types.chat import ChatCompletionUserMessageParam

from cacheback.adapters.providers import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from cacheback.adapters.providers._key_memo import MAX_REQUEST_CHARS, KeyMemo, fingerprint


def chat(content: Any = "How do I reverse a list?", **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **params}


# Requests that differ only in ways Python's == does not see, or that the key ignores.
VARIANTS: list[dict[str, Any]] = [
    chat(),
    chat(temperature=1),
    chat(temperature=1.0),
    chat(temperature=True),
    chat(temperature=0),
    chat(temperature=0.5),
    chat(top_p=1, temperature=0.5),
    chat(temperature=0.5, top_p=1),
    chat(stop=["a", "b"]),
    chat(stop=("a", "b")),
    chat(stop=[]),
    chat(stop=None),
    chat(n=1),
    chat(n=2),
    chat(seed=True),
    chat(seed=1),
    chat(stream=True),
    chat(stream=1),
    chat(user="someone"),
    chat(response_format={"type": "json_object"}),
    chat(response_format={"type": "text"}),
    chat(extra_body={"temperature": 1}),
    chat(extra_headers={"anthropic-beta": "x", "X-Trace": "1"}),
    chat(extra_headers={"X-Trace": "2"}),
    chat([{"type": "text", "text": "How do I reverse a list?"}]),
    chat("How do I reverse a list? "),
    chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, *chat()["messages"]]},
    {"model": "gpt-4o-mini", "messages": chat()["messages"]},
    {"model": "gpt-4o", "messages": []},
    {"model": "gpt-4o", "messages": [{"role": "assistant", "content": "hi"}]},
    {"model": "gpt-4o", "messages": [{1: "not a str key"}]},
]


def test_every_request_gets_its_codecs_key_and_repeats_share_it() -> None:
    memo = KeyMemo()
    for ignore in ((), ("temperature",)):
        for params in VARIANTS:
            expected = OPENAI_CHAT.key(params, ignore_params=ignore)
            assert memo.key(OPENAI_CHAT, params, ignore) == expected, params
        for params in VARIANTS:  # the second time round, from the memo
            assert memo.key(OPENAI_CHAT, params, ignore) == OPENAI_CHAT.key(params, ignore_params=ignore)
    again = memo.key(OPENAI_CHAT, chat(temperature=0.5), ())
    assert memo.key(OPENAI_CHAT, chat(temperature=0.5), ()) is again  # kept, not keyed again


def test_each_codec_keys_its_own_requests() -> None:
    memo = KeyMemo()
    message = {"model": "claude-sonnet-4-20250514", "max_tokens": 64, "messages": chat()["messages"]}
    responses = {"model": "gpt-4o", "input": "How do I reverse a list?"}
    asks = ((ANTHROPIC_MESSAGES, message), (OPENAI_RESPONSES, responses), (OPENAI_CHAT, chat()))
    for codec, params in asks:
        for _ in range(2):
            assert memo.key(codec, params) == codec.key(params)
    # The same parameters through another API are another key.
    assert memo.key(ANTHROPIC_MESSAGES, chat()) == ANTHROPIC_MESSAGES.key(chat())
    assert memo.key(ANTHROPIC_MESSAGES, chat()).scope != memo.key(OPENAI_CHAT, chat()).scope


def test_requests_without_a_fingerprint_are_keyed_every_time() -> None:
    memo = KeyMemo()
    typed = ChatCompletionUserMessageParam(role="user", content="How do I reverse a list?")
    unfit = [
        chat(temperature=NOT_GIVEN),
        chat(b"raw bytes"),
        {"model": "gpt-4o", "messages": iter(chat()["messages"])},
        chat("x" * (MAX_REQUEST_CHARS + 1)),
    ]
    for params in unfit:
        assert fingerprint(params) is None
        assert memo.key(OPENAI_CHAT, params) == OPENAI_CHAT.key(params)
    assert len(memo) == 0
    assert fingerprint({"model": "gpt-4o", "messages": [typed]}) is not None  # a TypedDict is a dict


def test_a_question_with_media_is_not_kept() -> None:
    picture = base64.b64encode(b"\x89PNG fake picture").decode()
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{picture}"}}
    params = chat([{"type": "text", "text": "What is this?"}, part])
    memo = KeyMemo()
    key = memo.key(OPENAI_CHAT, params)
    assert key.media and key == OPENAI_CHAT.key(params)
    assert len(memo) == 0


def test_the_memo_is_bounded_by_count_and_text() -> None:
    memo = KeyMemo(max_keys=3, max_chars=10_000)
    for i in range(6):
        memo.key(OPENAI_CHAT, chat(f"Question {i}"))
    assert len(memo) == 3
    memo = KeyMemo(max_keys=100, max_chars=10_000)
    for i in range(6):
        memo.key(OPENAI_CHAT, chat(f"{i} " + "y" * 3_000))
    assert len(memo) == 3  # about 3,000 characters each
