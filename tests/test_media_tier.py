"""The media tier end to end: near-identical images and clips keyed alike through a real
(tiny) CLIP or Whisper ONNX model, or a bring-your-own embedder, in the SDK clients and the
proxy; a different picture with the same text stays a miss."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _client_helpers import openai_args
from _media_helpers import png, wav
from _proxy_helpers import LoopWatch, RunningProxy, proxy_config, running_proxy
from _tiny_media_models import build_whisper_encoder
from fake_provider import FakeProvider
from test_embedder_clip import build_image_model
from test_multimodal_e2e import audio_question, image_question

from cacheback import CachedOpenAI
from cacheback.adapters.embedders import register, unregister

RED = png((200, 30, 30))
BLUE = png((30, 30, 200))
STRIPED_RED = png((200, 30, 30), stripe=True)  # cosine 0.947 to RED on the tiny model: below 0.95


def reencoded(picture: bytes, fmt: str = "JPEG", size: int | None = None) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(picture)).convert("RGB")
    if size is not None:
        image = image.resize((size, size))
    out = io.BytesIO()
    image.save(out, format=fmt, quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("media_models")
    build_image_model(d / "model.onnx")
    build_whisper_encoder(d / "encoder.onnx")
    return d


def media_client(fake: FakeProvider, cache_dir: Path, embedder: Any, **settings: Any) -> CachedOpenAI:
    return CachedOpenAI(**openai_args(fake, cache_dir, embedder, cache_settings=settings))


def hit(client: CachedOpenAI, messages: list[dict[str, Any]]) -> bool:
    answer = client.chat.completions.create(model="gpt-4o", messages=messages)
    client.cache.flush()
    return bool(answer.cacheback_hit)  # type: ignore[attr-defined]


def test_clip_matches_a_reencoded_picture_not_another_one(
    fake: FakeProvider, cache_dir: Path, embedder: Any, model_dir: Path
) -> None:
    settings = {"image_embedder": "clip", "image_model_dir": str(model_dir)}
    with media_client(fake, cache_dir, embedder, **settings) as client:
        before = client.cache.stats["embedders"]
        assert before["image"] == {"name": "clip", "dim": None, "state": "not loaded", "loaded": False}
        assert before["audio"]["state"] == "off" and before["text"]["name"] == "minilm"
        assert hit(client, image_question(RED)) is False
        assert hit(client, image_question(reencoded(RED))) is True  # other bytes, same picture
        assert hit(client, image_question(BLUE)) is False  # same text, another picture
        assert hit(client, image_question(STRIPED_RED)) is False  # similar, under the threshold
        # The text still has to match next to the matched picture.
        assert hit(client, image_question(reencoded(RED), "Write a poem about the sea.")) is False
        after = client.cache.stats["embedders"]["image"]
        assert after["loaded"] is True and after["dim"] == 8 and after["state"] == "loaded"
    assert fake.count("chat") == 4
    # The ids of known media outlive the process: a resized copy finds the original's answer.
    with media_client(fake, cache_dir, embedder, **settings) as client:
        assert hit(client, image_question(reencoded(RED, "PNG", size=96))) is True
    with sqlite3.connect(cache_dir / "media_keys.sqlite") as db:
        rows = db.execute("SELECT COUNT(*), COUNT(vector) FROM media_keys").fetchone()
    assert rows == (5, 3)  # RED, BLUE, STRIPED_RED known with vectors; two copies point at RED


def test_whisper_matches_a_resampled_clip(
    fake: FakeProvider, cache_dir: Path, embedder: Any, model_dir: Path
) -> None:
    settings = {"audio_embedder": "whisper", "audio_model_dir": str(model_dir)}
    with media_client(fake, cache_dir, embedder, **settings) as client:
        assert hit(client, audio_question(wav(440.0))) is False
        assert hit(client, audio_question(wav(440.0, rate=22050))) is True
        assert hit(client, audio_question(wav(660.0))) is False
        assert client.cache.stats["embedders"]["audio"]["dim"] == 8


def test_a_broken_model_leaves_exact_keys(
    fake: FakeProvider, cache_dir: Path, embedder: Any, tmp_path: Path
) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    with media_client(
        fake, cache_dir, embedder, image_embedder="clip", image_model_dir=str(tmp_path)
    ) as client:
        assert hit(client, image_question(RED)) is False
        assert hit(client, image_question(RED)) is True  # the exact tier still serves repeats
        assert hit(client, image_question(reencoded(RED))) is False
        state = client.cache.stats["embedders"]["image"]
        assert state["state"] == "failed" and "error" in state


class MeanColour:
    """A bring-your-own image embedder: the picture's mean colour as a unit vector."""

    calls = 0

    @property
    def name(self) -> str:
        return "mean-colour"

    @property
    def dim(self) -> int:
        return 3

    def embed_media(self, items: Any) -> np.ndarray:
        from PIL import Image

        MeanColour.calls += len(items)
        rows = [
            np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32).mean(axis=(0, 1))
            for b in items
        ]
        matrix = np.stack(rows)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": 3}


def test_bring_your_own_embedder_in_a_client(fake: FakeProvider, cache_dir: Path, embedder: Any) -> None:
    MeanColour.calls = 0
    with media_client(fake, cache_dir, embedder, image_embedder=MeanColour()) as client:
        assert hit(client, image_question(RED)) is False
        assert hit(client, image_question(reencoded(RED))) is True
        assert hit(client, image_question(BLUE)) is False
        assert hit(client, image_question(RED)) is True  # known digests are not embedded again
        image = client.cache.stats["embedders"]["image"]
        assert image["name"] == "mean-colour" and image["dim"] == 3 and image["loaded"] is True
    assert MeanColour.calls == 3


@pytest.fixture
def byo_proxy(
    fake: FakeProvider, cache_dir: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningProxy]:
    register("mean-colour-test", lambda **_: MeanColour())
    monkeypatch.setenv("CACHEBACK_IMAGE_EMBEDDER", "mean-colour-test")
    try:
        with running_proxy(proxy_config(fake, cache_dir), embedder) as px:
            yield px
    finally:
        unregister("mean-colour-test")


def test_bring_your_own_embedder_in_the_proxy(byo_proxy: RunningProxy, fake: FakeProvider) -> None:
    with byo_proxy.http() as http:
        health = http.get("/health").json()["embedders"]
        assert health["image"]["name"] == "mean-colour-test" and health["image"]["loaded"] is False
        assert health["text"]["name"] == "minilm" and health["audio"]["state"] == "off"
    with byo_proxy.openai() as sdk:
        chat = sdk.chat.completions.with_raw_response
        first = chat.create(model="gpt-4o", messages=image_question(RED))
        time.sleep(0.25)  # the write-behind fill lands
        copy = chat.create(model="gpt-4o", messages=image_question(reencoded(RED, size=64)), stream=True)
        assert copy.headers["x-cacheback-hit"] == "true" and copy.headers["x-cacheback-modality"] == "image"
        text = "".join(c.choices[0].delta.content or "" for c in copy.parse() if c.choices)
        assert text == first.parse().choices[0].message.content
        other = chat.create(model="gpt-4o", messages=image_question(BLUE))
        assert other.headers["x-cacheback-hit"] == "false"
    assert fake.count("chat") == 2
    with byo_proxy.http() as http:
        stats = http.get("/v1/cache/stats").json()["embedders"]
    assert stats["image"]["loaded"] is True and stats["image"]["dim"] == 3


def test_the_media_tier_never_blocks_the_proxy_loop(
    fake: FakeProvider, cache_dir: Path, embedder: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHEBACK_IMAGE_EMBEDDER", "clip")
    monkeypatch.setenv("CACHEBACK_IMAGE_MODEL_DIR", str(model_dir))
    watch = LoopWatch()
    with running_proxy(proxy_config(fake, cache_dir), embedder, watch=watch) as px:
        watch.armed = True
        with px.openai() as sdk:
            chat = sdk.chat.completions.with_raw_response
            chat.create(model="gpt-4o", messages=image_question(RED))  # loads CLIP, writes the key file
            time.sleep(0.25)
            copy = chat.create(model="gpt-4o", messages=image_question(reencoded(RED)))
            assert copy.headers["x-cacheback-hit"] == "true"
        with px.http() as http:
            assert http.get("/health").json()["embedders"]["image"]["loaded"] is True
        watch.armed = False
    assert watch.calls == []
