"""Image and audio parts are keyed exactly by their decoded bytes (URLs by their string)."""

from __future__ import annotations

import base64
from typing import Any

from cacheback.adapters.providers.anthropic_messages import anthropic_messages_key
from cacheback.adapters.providers.openai_chat import openai_chat_key
from cacheback.adapters.providers.openai_responses import openai_responses_key

PIXELS_A = b"\x89PNG fake picture one"
PIXELS_B = b"\x89PNG fake picture two"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chat_with(*parts: dict[str, Any], text: str = "What is in this picture?") -> Any:
    content = [{"type": "text", "text": text}, *parts]
    return openai_chat_key({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})


def image_url(url: str, **extra: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def test_chat_image_keyed_by_decoded_bytes() -> None:
    a = chat_with(image_url(f"data:image/png;base64,{b64(PIXELS_A)}"))
    again = chat_with({"type": "image_url", "image_url": f"data:image/png;base64,{b64(PIXELS_A)}"})
    b = chat_with(image_url(f"data:image/png;base64,{b64(PIXELS_B)}"))
    assert a.cacheable and a.semantic and a.modality == "image"
    assert a.scope == again.scope  # the string and the object spelling are one part
    assert a.scope != b.scope  # a different picture never shares a scope
    assert a.media[0].data == PIXELS_A and a.media[0].digest.startswith("sha256:")
    # Nothing of the bytes themselves is kept in the key, only their hash.
    assert b64(PIXELS_A) not in repr(a.media[0].key())
    # detail changes the answer, so it is part of the key.
    low = chat_with(image_url(f"data:image/png;base64,{b64(PIXELS_A)}", detail="low"))
    assert low.scope != a.scope
    # Same picture, other words: same scope (the text is matched semantically within it).
    reworded = chat_with(image_url(f"data:image/png;base64,{b64(PIXELS_A)}"), text="Describe the image")
    assert reworded.scope == a.scope and reworded.query != a.query


def test_chat_image_url_keyed_by_string_and_audio_by_bytes() -> None:
    url = chat_with(image_url("https://example.com/cat.png"))
    assert url.cacheable and url.media[0].digest == "url:https://example.com/cat.png"
    assert url.media[0].data is None
    assert url.scope != chat_with(image_url("https://example.com/dog.png")).scope

    def audio(data: bytes, fmt: str = "wav") -> dict[str, Any]:
        return {"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}}

    clip = chat_with(audio(b"RIFF one"), text="What is said here?")
    assert clip.cacheable and clip.modality == "audio" and clip.media[0].data == b"RIFF one"
    assert clip.scope == chat_with(audio(b"RIFF one"), text="What is said here?").scope
    assert clip.scope != chat_with(audio(b"RIFF two"), text="What is said here?").scope
    assert clip.scope != chat_with(audio(b"RIFF one", "mp3"), text="What is said here?").scope
    both = chat_with(audio(b"RIFF one"), image_url("https://example.com/cat.png"))
    assert both.modality == "audio+image"


def test_media_alone_is_exact_only_and_bad_data_is_not_cached() -> None:
    alone = openai_chat_key(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [image_url(f"data:image/png;base64,{b64(PIXELS_A)}")]}],
        }
    )
    assert alone.cacheable and not alone.semantic and "media" in alone.reason
    broken = chat_with(image_url("data:image/png;base64,@@@"))
    assert not broken.cacheable and "base64" in broken.reason
    not_base64 = chat_with(image_url("data:image/png,plain"))
    assert not not_base64.cacheable


def test_responses_and_anthropic_images() -> None:
    def responses(part: dict[str, Any]) -> Any:
        content = [{"type": "input_text", "text": "What is this?"}, part]
        return openai_responses_key({"model": "gpt-4o", "input": [{"role": "user", "content": content}]})

    inline = responses({"type": "input_image", "image_url": f"data:image/jpeg;base64,{b64(PIXELS_A)}"})
    assert inline.cacheable and inline.media[0].data == PIXELS_A
    assert (
        inline.scope
        != responses({"type": "input_image", "image_url": f"data:image/jpeg;base64,{b64(PIXELS_B)}"}).scope
    )
    by_file = responses({"type": "input_image", "file_id": "file-123"})
    assert by_file.cacheable and by_file.media[0].digest == "file:file-123"
    assert not responses({"type": "input_image"}).cacheable

    def anthropic(source: dict[str, Any]) -> Any:
        content = [{"type": "image", "source": source}, {"type": "text", "text": "What is this?"}]
        return anthropic_messages_key(
            {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": content}]}
        )

    a = anthropic({"type": "base64", "media_type": "image/png", "data": b64(PIXELS_A)})
    b = anthropic({"type": "base64", "media_type": "image/png", "data": b64(PIXELS_B)})
    assert a.cacheable and a.semantic and a.modality == "image" and a.scope != b.scope
    assert a.media[0].digest == inline.media[0].digest  # one picture, one hash, whatever the API
    linked = anthropic({"type": "url", "url": "https://example.com/cat.png"})
    assert linked.cacheable and linked.media[0].digest == "url:https://example.com/cat.png"
