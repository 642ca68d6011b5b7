"""Audio embeddings from a Whisper encoder exported to ONNX, with Whisper's own features.

No weights ship with cacheback: ``model_dir`` holds ``encoder.onnx``, Whisper's audio
encoder (``input_features`` float32 (n, mels, 3000) → ``last_hidden_state`` (n, 1500, d)),
as ``optimum-cli export onnx --model openai/whisper-base`` writes it (its
``encoder_model.onnx`` is accepted too). A clip is decoded (WAV, with the stdlib ``wave``
module), mixed to mono, resampled to 16 kHz, padded or cut to 30 s and turned into
Whisper's log-mel features (NumPy only); the vector is the encoder's output averaged over
the frames of the clip (not its padding), L2 normalised.
"""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._types import Vector

from ._clip import checked_session
from ._minilm import l2_normalise

__all__ = ["WhisperAudioEmbedder", "decode_wav", "log_mel", "mel_filters"]

MODEL_FILES = ("encoder.onnx", "encoder_model.onnx")
SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
N_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS
N_FRAMES = N_SAMPLES // HOP  # 3000


def decode_wav(data: bytes) -> NDArray[np.float32]:
    """Mono float32 samples in [-1, 1] at 16 kHz from a PCM WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise EmbedderError(f"could not decode audio (a PCM WAV file is expected): {exc}") from exc
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise EmbedderError(f"unsupported WAV sample width {width}")
    if channels > 1:
        samples = samples[: len(samples) - len(samples) % channels].reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and len(samples):
        # Linear resampling: the features average over 25 ms windows, finer care buys nothing.
        count = round(len(samples) * SAMPLE_RATE / rate)
        positions = np.arange(count, dtype=np.float64) * (rate / SAMPLE_RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples)
    return np.asarray(samples, dtype=np.float32)


def _hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """The Slaney mel scale (linear below 1 kHz, logarithmic above), as Whisper's filters use."""
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> NDArray[np.float32]:
    """Triangular mel filters, (n_mels, 1 + n_fft // 2), Slaney area-normalised."""
    freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(samples: NDArray[np.float32], n_mels: int = 80) -> NDArray[np.float32]:
    """Whisper's input features, (n_mels, 3000): 30 s of audio, 25 ms Hann windows every
    10 ms, power spectrum through mel filters, log10, clamped to 8 below the peak, scaled."""
    audio = np.zeros(N_SAMPLES, dtype=np.float32)
    clip = samples[:N_SAMPLES]
    audio[: len(clip)] = clip
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, 201)
    mel = mel_filters(n_mels) @ power[:-1].T.astype(np.float32)  # the last frame is dropped
    spec: NDArray[np.float32] = np.log10(np.maximum(mel, 1e-10)).astype(np.float32)
    spec = np.maximum(spec, spec.max() - 8.0)
    return np.asarray((spec + 4.0) / 4.0, dtype=np.float32)


class WhisperAudioEmbedder:
    """Audio clip embeddings: a Whisper encoder's states averaged over time, L2 normalised.

    The file is located at construction (ModelNotFound when absent); an optional
    ``<file>.sha256`` checksum is verified and the session loads on first use.
    """

    def __init__(self, model_dir: Path | str | None, *, intra_op_threads: int = 2) -> None:
        if model_dir is None:
            raise ModelNotFound(
                "the whisper audio embedder needs model_dir: no weights ship with cacheback;"
                f" point it at a directory holding {MODEL_FILES[0]} (docs/multimodal.md)"
            )
        if intra_op_threads < 1:
            raise ConfigError("intra_op_threads must be at least 1")
        self._dir = Path(model_dir).expanduser()
        found = [self._dir / f for f in MODEL_FILES if (self._dir / f).is_file()]
        if not found:
            raise ModelNotFound(f"no Whisper encoder in {self._dir}: missing {MODEL_FILES[0]}")
        self._model = found[0]
        self._threads = intra_op_threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._input = "input_features"
        self._output = "last_hidden_state"
        self._mels = 80
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return "whisper"

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None
        return self._dim

    def load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            session = checked_session(self._model, self._threads)
            node = session.get_inputs()[0]
            shape = node.shape or []
            if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != N_FRAMES):
                raise EmbedderError(f"{self._model} takes {shape}, expected (n, mels, {N_FRAMES})")
            self._input = node.name
            self._mels = shape[1] if isinstance(shape[1], int) else 80
            outputs = [o.name for o in session.get_outputs()]
            self._output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]
            blank = np.zeros((1, self._mels, N_FRAMES), dtype=np.float32)
            self._dim = int(self._run(session, blank).shape[1])
            self._session = session

    def features(self, clip: bytes) -> NDArray[np.float32]:
        """The encoder input for one encoded clip, (mels, 3000)."""
        return log_mel(decode_wav(clip), self._mels)

    def embed_media(self, items: Sequence[bytes]) -> Vector:
        self.load()
        assert self._dim is not None
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        clips = [decode_wav(bytes(item)) for item in items]
        batch = np.stack([log_mel(clip, self._mels) for clip in clips])
        # Average only the states over the clip itself, not over the silence padding it to 30 s
        # (the encoder halves the frame rate: one state per 20 ms).
        spans = [max(1, min(len(c), N_SAMPLES) // (2 * HOP)) for c in clips]
        return self._run(self._session, batch, spans)

    def _run(self, session: Any, batch: NDArray[np.float32], spans: Sequence[int] | None = None) -> Vector:
        try:
            states = np.asarray(session.run([self._output], {self._input: batch})[0], dtype=np.float32)
        except Exception as exc:  # onnxruntime's own error types
            raise EmbedderError(f"onnxruntime inference failed: {exc}") from exc
        if states.ndim != 3 or states.shape[0] != batch.shape[0]:
            raise EmbedderError(f"{self._output!r} has shape {states.shape}, expected (n, frames, d)")
        if spans is None:
            return l2_normalise(states.mean(axis=1))
        pooled = np.stack(
            [row[: max(1, min(span, len(row)))].mean(axis=0) for row, span in zip(states, spans, strict=True)]
        )
        return l2_normalise(pooled)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": "whisper-encoder",
            "modality": "audio",
            "dim": self._dim,
            "runtime": "onnxruntime",
            "model_path": str(self._model),
            "loaded": self._session is not None,
        }
