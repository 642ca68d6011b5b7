"""The Whisper-encoder audio embedder: real WAV decoding and log-mel features (NumPy), real
onnxruntime loading and inference on a tiny encoder with Whisper's signature."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
from _media_helpers import wav
from _tiny_media_models import WHISPER_DIM, build_whisper_encoder

from cacheback.adapters.embedders import WhisperAudioEmbedder, create_media
from cacheback.adapters.embedders._whisper import N_FRAMES, decode_wav, log_mel, mel_filters
from cacheback.core._errors import EmbedderError, ModelNotFound
from cacheback.core._ports import is_media_embedder


def stereo_wav(samples: np.ndarray, rate: int, width: int = 2) -> bytes:
    ints = (samples * 30000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.repeat(ints, 2).tobytes())
    return out.getvalue()


def test_decode_mixes_down_and_resamples() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    samples = decode_wav(stereo_wav(tone, 44100))
    assert samples.dtype == np.float32 and abs(len(samples) - 16000) <= 1
    assert 0.85 < float(np.abs(samples).max()) <= 1.0
    # A 440 Hz tone stays a 440 Hz tone: the spectrum peaks there after resampling.
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(int(np.argmax(spectrum)) * 16000 / len(samples) - 440) < 3
    with pytest.raises(EmbedderError, match="WAV"):
        decode_wav(b"ID3 not a wav file")


def test_log_mel_is_whispers_feature_layout() -> None:
    filters = mel_filters(80)
    assert filters.shape == (80, 201) and (filters >= 0).all()
    # Slaney normalisation: each triangle's area is 1 over its width in Hz (2 / width * width / 2).
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # centres rise with the band
    silence = log_mel(np.zeros(16000, dtype=np.float32))
    assert silence.shape == (80, N_FRAMES) and np.allclose(silence, -1.5)  # (log10(1e-10) + 4) / 4
    tone = decode_wav(wav(1000.0, seconds=1.0))
    features = log_mel(tone)
    band = int(features[:, 10:90].mean(axis=1).argmax())
    centre_hz = band_centres()[band]
    assert 800 < centre_hz < 1250  # the 1 kHz tone lands in the band around 1 kHz
    assert features.min() >= features.max() - 2.0  # clamped to 8 (log10) below the peak, / 4
    assert features[:, 200:].std() < 1e-6  # the padding after the 1 s clip is flat


def band_centres() -> np.ndarray:
    filters = mel_filters(80)
    freqs = np.linspace(0, 8000, 201)
    return np.asarray((filters * freqs).sum(axis=1) / filters.sum(axis=1))


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("whisper")
    build_whisper_encoder(d / "encoder.onnx")
    return d


def test_embeds_clips_through_the_encoder(whisper_dir: Path) -> None:
    embedder = create_media("whisper", model_dir=whisper_dir, intra_op_threads=1)
    assert embedder.describe()["loaded"] is False  # loads on first use
    assert isinstance(embedder, WhisperAudioEmbedder) and is_media_embedder(embedder)
    a, again, other = embedder.embed_media([wav(440.0), wav(440.0), wav(1700.0)])
    assert embedder.dim == WHISPER_DIM and embedder.describe()["loaded"] is True
    assert np.allclose(np.linalg.norm(a), 1.0, atol=1e-5)
    assert float(a @ again) > 0.9999
    resampled = embedder.embed_media([wav(440.0, rate=22050)])[0]
    assert float(a @ resampled) > float(a @ other)  # the same tone at another rate is closer
    with pytest.raises(EmbedderError):
        embedder.embed_media([b"not audio"])


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"encoder\.onnx"):
        WhisperAudioEmbedder(tmp_path)
    with pytest.raises(ModelNotFound, match="model_dir"):
        WhisperAudioEmbedder(None)
