"""Image and audio questions cached end to end: the real SDKs through the cached clients and
through the proxy, in front of the fake provider."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _client_helpers import anthropic_args, openai_args
from _media_helpers import b64, data_url, png, wav
from _proxy_helpers import LoopWatch, RunningProxy, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback import AsyncCachedOpenAI, CachedAnthropic, CachedOpenAI

RED = png((200, 30, 30))
BLUE = png((30, 30, 200))
TONE = wav(440.0)
OTHER_TONE = wav(660.0)


def image_question(picture: bytes, text: str = "What colour is this picture?") -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": data_url(picture)}},
            ],
        }
    ]


def audio_question(clip: bytes, text: str = "What note is played here?") -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "input_audio", "input_audio": {"data": b64(clip), "format": "wav"}},
            ],
        }
    ]


def anthropic_image(picture: bytes, text: str = "What colour is this picture?") -> list[dict[str, Any]]:
    source = {"type": "base64", "media_type": "image/png", "data": b64(picture)}
    return [
        {"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": text}]}
    ]


# --- the cached clients ------------------------------------------------------------------------


@pytest.fixture
def client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[CachedOpenAI]:
    c = CachedOpenAI(**openai_args(fake, cache_dir, embedder))
    yield c
    c.close()


def test_client_repeated_image_is_a_hit_and_another_image_a_miss(
    client: CachedOpenAI, fake: FakeProvider
) -> None:
    first = client.chat.completions.create(model="gpt-4o", messages=image_question(RED))
    assert first.cacheback_hit is False and first.cacheback.modality == "image"  # type: ignore[attr-defined]
    client.cache.flush()
    again = client.chat.completions.create(model="gpt-4o", messages=image_question(RED))
    assert again.cacheback_hit is True and again.cacheback.modality == "image"  # type: ignore[attr-defined]
    assert again.choices[0].message.content == first.choices[0].message.content
    # Same words, same picture re-worded question: the text is matched semantically next to it.
    reworded = client.chat.completions.create(
        model="gpt-4o", messages=image_question(RED, "Which colour is this picture?")
    )
    assert reworded.cacheback_hit is True  # type: ignore[attr-defined]
    assert fake.count("chat") == 1
    # The same text with a different picture is never served the first picture's answer.
    other = client.chat.completions.create(model="gpt-4o", messages=image_question(BLUE))
    assert other.cacheback_hit is False and other.cacheback.tier == "upstream"  # type: ignore[attr-defined]
    assert fake.count("chat") == 2
    # Different words next to the same picture: a miss.
    unrelated = client.chat.completions.create(
        model="gpt-4o", messages=image_question(RED, "Write a poem about the sea.")
    )
    assert unrelated.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 3


def test_client_repeated_audio_is_a_hit_streams_included(client: CachedOpenAI, fake: FakeProvider) -> None:
    first = client.chat.completions.create(model="gpt-4o-audio-preview", messages=audio_question(TONE))
    assert first.cacheback.modality == "audio" and first.cacheback_hit is False  # type: ignore[attr-defined]
    client.cache.flush()
    stream = client.chat.completions.create(
        model="gpt-4o-audio-preview", messages=audio_question(TONE), stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert stream.cacheback_hit is True and stream.cacheback.modality == "audio"  # type: ignore[attr-defined]
    assert text == first.choices[0].message.content
    miss = client.chat.completions.create(model="gpt-4o-audio-preview", messages=audio_question(OTHER_TONE))
    assert miss.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("chat") == 2


def test_client_anthropic_image(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    with CachedAnthropic(**anthropic_args(fake, cache_dir, embedder)) as client:
        first = client.messages.create(model="claude-x", max_tokens=64, messages=anthropic_image(RED))
        client.cache.flush()
        again = client.messages.create(model="claude-x", max_tokens=64, messages=anthropic_image(RED))
        other = client.messages.create(model="claude-x", max_tokens=64, messages=anthropic_image(BLUE))
    assert first.cacheback_hit is False and again.cacheback_hit is True  # type: ignore[attr-defined]
    assert again.cacheback.modality == "image" and other.cacheback_hit is False  # type: ignore[attr-defined]
    assert fake.count("messages") == 2


# --- the proxy ---------------------------------------------------------------------------------


@pytest.fixture
def proxy(fake: FakeProvider, cache_dir: Path, embedder: Any) -> Iterator[RunningProxy]:
    with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
        yield px


def settle() -> None:
    time.sleep(0.25)  # write-behind fills land


def test_proxy_image_and_audio_questions(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.openai() as sdk:
        chat = sdk.chat.completions.with_raw_response
        first = chat.create(model="gpt-4o", messages=image_question(RED))
        assert first.headers["x-cacheback-hit"] == "false"
        assert first.headers["x-cacheback-modality"] == "image"
        settle()
        again = chat.create(model="gpt-4o", messages=image_question(RED))
        assert again.headers["x-cacheback-hit"] == "true"
        assert again.headers["x-cacheback-modality"] == "image"
        assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
        other = chat.create(model="gpt-4o", messages=image_question(BLUE))
        assert other.headers["x-cacheback-hit"] == "false"
        assert fake.count("chat") == 2

        heard = chat.create(model="gpt-4o-audio-preview", messages=audio_question(TONE))
        assert heard.headers["x-cacheback-modality"] == "audio"
        settle()
        streamed = chat.create(model="gpt-4o-audio-preview", messages=audio_question(TONE), stream=True)
        assert streamed.headers["x-cacheback-hit"] == "true"
        assert streamed.headers["x-cacheback-modality"] == "audio"
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        assert text == heard.parse().choices[0].message.content
        assert fake.count("chat") == 3

        plain = chat.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}])
        assert plain.headers["x-cacheback-modality"] == "text"


def test_proxy_anthropic_and_responses_images(proxy: RunningProxy, fake: FakeProvider) -> None:
    with proxy.anthropic() as sdk:
        first = sdk.messages.with_raw_response.create(
            model="claude-x", max_tokens=64, messages=anthropic_image(RED)
        )
        settle()
        again = sdk.messages.with_raw_response.create(
            model="claude-x", max_tokens=64, messages=anthropic_image(RED)
        )
    assert first.headers["x-cacheback-hit"] == "false" and again.headers["x-cacheback-hit"] == "true"
    assert again.headers["x-cacheback-modality"] == "image"
    assert fake.count("messages") == 1
    content = [
        {"type": "input_text", "text": "What colour is this picture?"},
        {"type": "input_image", "image_url": data_url(BLUE), "detail": "low"},
    ]
    with proxy.openai() as sdk:
        ask = sdk.responses.with_raw_response.create
        one = ask(model="gpt-4o", input=[{"role": "user", "content": content}])
        settle()
        two = ask(model="gpt-4o", input=[{"role": "user", "content": content}])
    assert one.headers["x-cacheback-hit"] == "false" and two.headers["x-cacheback-hit"] == "true"
    assert fake.count("responses") == 1


# --- large inline media are keyed off the event loop ------------------------------------------

BIG = os.urandom(400 * 1024)  # not a real picture: bytes are all the exact tier reads
_DECODING = {"a2b_base64", "openssl_sha256"}


class DecodeWatch(LoopWatch):
    """Records base64 decoding and hashing on the event-loop thread."""

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if self.armed and event == "c_call" and getattr(arg, "__name__", "") in _DECODING:
            self.calls.append(arg.__name__)


@pytest.mark.anyio
async def test_async_client_keys_large_media_off_the_loop(
    fake: FakeProvider, cache_dir: Path, embedder: Any
) -> None:
    watch = DecodeWatch()
    async with AsyncCachedOpenAI(**openai_args(fake, cache_dir, embedder)) as client:
        await client.chat.completions.create(model="gpt-4o", messages=image_question(PNG_SMALL))
        sys.setprofile(watch.hook)
        watch.armed = True
        try:
            first = await client.chat.completions.create(model="gpt-4o", messages=image_question(BIG))
            await client.cache.flush()
            again = await client.chat.completions.create(model="gpt-4o", messages=image_question(BIG))
        finally:
            sys.setprofile(None)
    assert first.cacheback_hit is False and again.cacheback_hit is True  # type: ignore[attr-defined]
    assert watch.calls == []


def test_proxy_keys_large_media_off_the_loop(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    watch = DecodeWatch()
    with running_proxy(proxy_config(fake, cache_dir), embedder, watch=watch) as px, px.openai() as sdk:
        chat = sdk.chat.completions.with_raw_response
        chat.create(model="gpt-4o", messages=image_question(PNG_SMALL))
        small_calls = len(watch.calls)
        watch.armed = True
        first = chat.create(model="gpt-4o", messages=image_question(BIG))
        settle()
        again = chat.create(model="gpt-4o", messages=image_question(BIG))
        watch.armed = False
    assert small_calls == 0 and first.headers["x-cacheback-hit"] == "false"
    assert again.headers["x-cacheback-hit"] == "true"
    assert watch.calls == []
    # The watch does see decoding on the loop: a small picture is keyed there.
    with running_proxy(proxy_config(fake, cache_dir), embedder, watch=watch) as px, px.openai() as sdk:
        watch.armed = True
        sdk.chat.completions.create(model="gpt-4o", messages=image_question(PNG_SMALL))
        watch.armed = False
    assert "a2b_base64" in watch.calls


PNG_SMALL = png((10, 200, 10))
