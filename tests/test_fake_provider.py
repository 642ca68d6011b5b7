"""The fake provider, exercised through the real openai and anthropic SDKs over HTTP."""

from __future__ import annotations

import asyncio
import math
import time

import anthropic
import openai
import pytest
from fake_provider import FakeProvider, Reply, embed_text, start_fake_provider

Q = [{"role": "user", "content": "What is Python?"}]


# --- OpenAI chat completions ---------------------------------------------------------------


def test_chat_json_is_deterministic_and_recorded(fake: FakeProvider, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o", messages=Q, temperature=0.2)
    assert completion.choices[0].message.content == "Answer to: What is Python? [gpt-4o]"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert fake.count("chat") == 1 and fake.count() == 1
    req = fake.last_request("chat")
    assert req.body["temperature"] == 0.2 and req.question == "What is Python?"
    assert req.headers["authorization"] == "Bearer sk-fake"
    again = oai.chat.completions.create(model="gpt-4o", messages=Q)
    assert again.choices[0].message.content == completion.choices[0].message.content
    assert again.id != completion.id


def test_chat_stream_with_usage(fake: FakeProvider, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=Q, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Answer to: What is Python? [gpt-4o-mini]"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert fake.last_request("chat").stream


def test_chat_n_and_finish_reasons(fake: FakeProvider, oai: openai.OpenAI) -> None:
    several = oai.chat.completions.create(model="m", messages=Q, n=2)
    assert [c.message.content for c in several.choices] == [
        "Answer to: What is Python? [m] #1",
        "Answer to: What is Python? [m] #2",
    ]
    fake.script(
        Reply(finish_reason="length"),
        Reply(finish_reason="content_filter"),
        Reply(refusal="I can't help with that."),
        Reply(tool_call=("lookup", {"q": "python"})),
        endpoint="chat",
    )
    assert oai.chat.completions.create(model="m", messages=Q).choices[0].finish_reason == "length"
    filtered = oai.chat.completions.create(model="m", messages=Q)
    assert filtered.choices[0].finish_reason == "content_filter"
    refused = oai.chat.completions.create(model="m", messages=Q).choices[0].message
    assert refused.refusal == "I can't help with that." and refused.content is None
    called = oai.chat.completions.create(model="m", messages=Q).choices[0]
    assert called.finish_reason == "tool_calls"
    assert called.message.tool_calls is not None
    assert called.message.tool_calls[0].function.arguments == '{"q": "python"}'  # type: ignore[union-attr]


def test_chat_stream_tool_call_and_refusal(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(tool_call=("f", {"a": 1})), Reply(refusal="No."), endpoint="chat")
    chunks = list(oai.chat.completions.create(model="m", messages=Q, stream=True))
    args = "".join(
        (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == '{"a": 1}' and chunks[-1].choices[0].finish_reason == "tool_calls"
    chunks = list(oai.chat.completions.create(model="m", messages=Q, stream=True))
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks) == "No."


def test_scripted_text_and_responder_hook(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(text="first"), Reply(text="second"))
    fake.responder = lambda req: Reply(text=f"hooked {req.model}")
    contents = [
        oai.chat.completions.create(model="x", messages=Q).choices[0].message.content for _ in range(3)
    ]
    assert contents == ["first", "second", "hooked x"]


# --- OpenAI responses ----------------------------------------------------------------------


def test_responses_json_and_stream(fake: FakeProvider, oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o", input="Hi there", instructions="Be brief.")
    assert response.output_text == "Answer to: Hi there [gpt-4o]"
    assert response.status == "completed" and response.instructions == "Be brief."
    events = list(oai.responses.create(model="gpt-4o", input=Q, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Answer to: What is Python? [gpt-4o]"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert fake.count("responses") == 2


def test_responses_stream_helper(fake: FakeProvider, oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o", input="Hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Answer to: Hello [gpt-4o]"


def test_responses_incomplete_refusal_tool(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(
        Reply(finish_reason="length"),
        Reply(refusal="Nope"),
        Reply(tool_call=("f", {})),
        Reply(finish_reason="content_filter"),
        endpoint="responses",
    )
    cut = oai.responses.create(model="m", input="q")
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    refused = oai.responses.create(model="m", input="q")
    assert refused.output[0].content[0].type == "refusal"  # type: ignore[union-attr]
    assert oai.responses.create(model="m", input="q").output[0].type == "function_call"
    kinds = [e.type for e in oai.responses.create(model="m", input="q", stream=True)]
    assert kinds[-1] == "response.incomplete"


# --- Anthropic messages --------------------------------------------------------------------


def test_messages_json_stream_and_helper(fake: FakeProvider, ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(model="claude-x", max_tokens=64, messages=Q)
    assert message.content[0].text == "Answer to: What is Python? [claude-x]"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    # anthropic 2.x sends the API key as a bearer token
    headers = fake.last_request("messages").headers
    assert "sk-fake" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert "anthropic-version" in fake.last_request("messages").headers
    events = list(ant.messages.create(model="claude-x", max_tokens=64, messages=Q, stream=True))
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    with ant.messages.stream(model="claude-x", max_tokens=64, messages=Q) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == message.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert fake.count("messages") == 3


def test_messages_stop_reasons(fake: FakeProvider, ant: anthropic.Anthropic) -> None:
    fake.script(
        Reply(finish_reason="length"),
        Reply(refusal="I won't."),
        Reply(tool_call=("get_weather", {"city": "Paris"})),
        endpoint="messages",
    )
    assert ant.messages.create(model="c", max_tokens=5, messages=Q).stop_reason == "max_tokens"
    assert ant.messages.create(model="c", max_tokens=5, messages=Q).stop_reason == "refusal"
    with ant.messages.stream(model="c", max_tokens=5, messages=Q) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Paris"}  # type: ignore[union-attr]


def test_async_clients(fake: FakeProvider) -> None:
    async def run() -> tuple[str, str]:
        async with fake.async_openai() as oai, fake.async_anthropic() as ant:
            stream = await oai.chat.completions.create(model="m", messages=Q, stream=True)
            assert isinstance(stream, openai.AsyncStream)
            chat = "".join([c.choices[0].delta.content or "" async for c in stream])
            async with ant.messages.stream(model="c", max_tokens=9, messages=Q) as ms:
                claude = "".join([t async for t in ms.text_stream])
            return chat, claude

    chat, claude = asyncio.run(run())
    assert chat == "Answer to: What is Python? [m]"
    assert claude == "Answer to: What is Python? [c]"


# --- embeddings and models -----------------------------------------------------------------


def test_embeddings_deterministic_unit_vectors(fake: FakeProvider, oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b", "a"], dimensions=8)
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 3 and all(len(v) == 8 for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != pytest.approx(vectors[1])
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    assert vectors[0] == pytest.approx(embed_text("a", 8), abs=1e-6)
    floats = oai.embeddings.create(model="e", input="a", dimensions=8, encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)


def test_models_in_both_shapes(fake: FakeProvider, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    assert "gpt-4o" in [m.id for m in oai.models.list()]
    assert "claude-sonnet-4-20250514" in [m.id for m in ant.models.list()]
    assert fake.count("models") == 2


# --- errors, delays, timeouts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_openai_errors_are_sdk_exceptions(
    fake: FakeProvider, oai: openai.OpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    fake.fail_next(status, message="injected", endpoint="chat")
    with pytest.raises(error) as info:
        oai.chat.completions.create(model="m", messages=Q)
    assert info.value.status_code == status and "injected" in info.value.message
    assert oai.chat.completions.create(model="m", messages=Q).choices  # one-shot injection
    fake.fail_next(503, endpoint="responses")
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="m", input="q", stream=True)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, anthropic.BadRequestError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ],
)
def test_anthropic_errors_are_sdk_exceptions(
    fake: FakeProvider, ant: anthropic.Anthropic, status: int, error: type[anthropic.APIStatusError]
) -> None:
    fake.fail_next(status, message="injected")
    with pytest.raises(error) as info:
        ant.messages.create(model="c", max_tokens=5, messages=Q)
    assert info.value.status_code == status
    assert info.value.body["error"]["message"] == "injected"  # type: ignore[index]


def test_mid_stream_errors(fake: FakeProvider, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    fake.script(Reply(stream_error_after=2), endpoint="chat")
    stream = oai.chat.completions.create(model="m", messages=Q, stream=True)
    with pytest.raises(openai.APIError, match="stream broke"):
        list(stream)
    fake.script(Reply(stream_error_after=1), endpoint="messages")
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        list(ant.messages.create(model="c", max_tokens=5, messages=Q, stream=True))
    fake.script(Reply(stream_error_after=1), endpoint="responses")
    kinds = [e.type for e in oai.responses.create(model="m", input="q", stream=True)]
    assert kinds[-1] == "error"


def test_api_key_check() -> None:
    with start_fake_provider(api_key="sk-right") as fake:
        with fake.openai(api_key="sk-wrong") as bad, pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=Q)
        with fake.anthropic(api_key="sk-wrong") as bad, pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="c", max_tokens=5, messages=Q)
        with fake.openai() as good:
            assert good.chat.completions.create(model="m", messages=Q).choices


def test_delay_and_timeouts(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(delay=0.3))
    started = time.monotonic()
    oai.chat.completions.create(model="m", messages=Q)
    assert time.monotonic() - started >= 0.3
    fake.script(Reply(hang=True))
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(model="m", messages=Q, timeout=0.3)
    fake.script(Reply(delay=5), endpoint="messages")
    with fake.anthropic(timeout=0.3) as ant, pytest.raises(anthropic.APITimeoutError):
        ant.messages.create(model="c", max_tokens=5, messages=Q)
    assert fake.count("chat") == 2 and fake.count("messages") == 1


def test_slow_stream_is_paced(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.script(Reply(text="one two three four", chunk_delay=0.05))
    started = time.monotonic()
    arrivals = [
        time.monotonic() - started for _ in oai.chat.completions.create(model="m", messages=Q, stream=True)
    ]
    assert arrivals[-1] - arrivals[0] >= 0.2


def test_bad_json_gets_provider_error(fake: FakeProvider) -> None:
    import httpx

    reply = httpx.post(f"{fake.openai_base_url}/chat/completions", content=b"{nope")
    assert reply.status_code == 400 and "error" in reply.json()
    reply = httpx.post(f"{fake.anthropic_base_url}/v1/messages", content=b"{nope")
    assert reply.json()["type"] == "error"
