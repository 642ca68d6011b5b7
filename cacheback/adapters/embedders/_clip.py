"""CLIP-style image embeddings (ViT-B/32 and alike) from ONNX files in a directory.

No CLIP weights ship with cacheback: the user points ``model_dir`` at an export
holding ``model.onnx`` (the image encoder: ``pixel_values`` float32
(n, 3, S, S) → ``image_embeds`` (n, d)) and, optionally, ``text_model.onnx``
plus ``tokenizer.json`` (the matching text encoder, so text can be matched
against images). Pillow is imported only when images are embedded (extra
``image``).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound
from cacheback.core._types import Vector

from ._minilm import MAX_RUN_ROWS, l2_normalise, open_session, read_checksum_file, verify_sha256

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from tokenizers import Tokenizer

__all__ = ["CLIP_MEAN", "CLIP_STD", "ClipImageEmbedder", "ImageInput"]

IMAGE_MODEL_FILE = "model.onnx"
TEXT_MODEL_FILE = "text_model.onnx"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_IMAGE_SIZE = 224
DEFAULT_CONTEXT_LENGTH = 77  # CLIP's text context

# OpenAI CLIP's normalisation (CLIPImageProcessor's image_mean / image_std).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

ImageInput: TypeAlias = "bytes | bytearray | memoryview | Path | PILImage"

_INT_TYPES: dict[str, type[np.signedinteger[Any]]] = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class ClipImageEmbedder:
    """Image (and optionally text) embeddings from a CLIP ONNX export, L2 normalised.

    ``embed_images`` takes encoded image bytes, paths or PIL images. ``embed``
    (the Embedder protocol, text) needs the optional text encoder. Files are
    located at construction (ModelNotFound when absent); optional
    ``<file>.sha256`` checksums are verified and the sessions load on first use.
    """

    def __init__(
        self,
        model_dir: Path | str | None,
        *,
        intra_op_threads: int = 2,
        image_size: int | None = None,
    ) -> None:
        if model_dir is None:
            raise ModelNotFound(
                "the CLIP embedder needs model_dir: no CLIP weights ship with cacheback;"
                f" point it at a directory holding {IMAGE_MODEL_FILE} (the image encoder)"
            )
        if intra_op_threads < 1:
            raise ConfigError("intra_op_threads must be at least 1")
        if image_size is not None and image_size < 1:
            raise ConfigError("image_size must be positive")
        self._dir = Path(model_dir).expanduser()
        self._image_model = self._dir / IMAGE_MODEL_FILE
        if not self._image_model.is_file():
            raise ModelNotFound(f"no CLIP image encoder in {self._dir}: missing {IMAGE_MODEL_FILE}")
        text_model, tokenizer = self._dir / TEXT_MODEL_FILE, self._dir / TOKENIZER_FILE
        if text_model.is_file() != tokenizer.is_file():
            missing = tokenizer if text_model.is_file() else text_model
            raise ModelNotFound(
                f"incomplete CLIP text encoder in {self._dir}: missing {missing.name}"
                f" ({TEXT_MODEL_FILE} and {TOKENIZER_FILE} go together)"
            )
        self._text_model = text_model if text_model.is_file() else None
        self._tokenizer_path = tokenizer
        self._intra_op_threads = intra_op_threads
        self._requested_size = image_size
        self._lock = threading.Lock()
        self._image: _Encoder | None = None
        self._text: _Encoder | None = None
        self._tokenizer: Tokenizer | None = None
        self._size = image_size or DEFAULT_IMAGE_SIZE

    # -- Embedder protocol ------------------------------------------------

    @property
    def name(self) -> str:
        return "clip"

    @property
    def dim(self) -> int:
        """The embedding width (loads the image encoder to read it)."""
        return self._load_image().dim

    @property
    def has_text(self) -> bool:
        return self._text_model is not None

    def embed(self, texts: Sequence[str]) -> Vector:
        """Text embeddings in the image space (needs text_model.onnx and tokenizer.json)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes a sequence of strings")
        if self._text_model is None:
            raise EmbedderError(
                f"the CLIP model in {self._dir} has no text encoder"
                f" ({TEXT_MODEL_FILE} and {TOKENIZER_FILE}); use embed_images()"
            )
        image = self._load_image()
        if not texts:
            return np.zeros((0, image.dim), dtype=np.float32)
        text, tokenizer = self._load_text()
        try:
            encodings = tokenizer.encode_batch(list(texts))
        except Exception as exc:
            raise EmbedderError(f"tokenizer failed: {exc}") from exc
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = enc.attention_mask
        columns = {"input_ids": ids, "attention_mask": mask}
        feeds = {name: columns[name].astype(text.types[name]) for name in text.inputs}
        return text.run(feeds, len(texts))

    def embed_images(self, images: Sequence[ImageInput]) -> Vector:
        """Image embeddings, shape (len(images), dim), float32, unit rows."""
        encoder = self._load_image()
        out: Vector = np.zeros((len(images), encoder.dim), dtype=np.float32)
        for start in range(0, len(images), MAX_RUN_ROWS):
            chunk = images[start : start + MAX_RUN_ROWS]
            pixels = self.preprocess(chunk)
            out[start : start + len(chunk)] = encoder.run({encoder.inputs[0]: pixels}, len(chunk))
        return out

    def embed_media(self, items: Sequence[bytes]) -> Vector:
        """The MediaEmbedder protocol: encoded image files → image embeddings."""
        return self.embed_images(list(items))

    def preprocess(self, images: Sequence[ImageInput]) -> NDArray[np.float32]:
        """CLIP preprocessing: RGB, shortest side to S (bicubic), centre crop, normalise."""
        if not images:
            return np.zeros((0, 3, self._size, self._size), dtype=np.float32)
        if self._image is None and self._requested_size is None:
            self._load_image()  # the model's input may fix S
        return np.stack([_to_pixels(_open_rgb(img), self._size) for img in images])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": "clip",
            "dim": self._image.dim if self._image is not None else None,
            "runtime": "onnxruntime",
            "modality": "image+text" if self.has_text else "image",
            "source": "directory",
            "model_path": str(self._dir),
            "image_size": self._size,
            "intra_op_threads": self._intra_op_threads,
            "loaded": self._image is not None,
        }

    # -- loading ----------------------------------------------------------

    def load(self) -> None:
        """Verify and load the encoders now instead of on first use."""
        self._load_image()
        if self._text_model is not None:
            self._load_text()

    def _load_image(self) -> _Encoder:
        encoder = self._image
        if encoder is not None:
            return encoder
        with self._lock:
            if self._image is None:
                session = checked_session(self._image_model, self._intra_op_threads)
                inputs = session.get_inputs()
                names = [node.name for node in inputs]
                first = "pixel_values" if "pixel_values" in names else names[0]
                shape = next(node.shape for node in inputs if node.name == first)
                size = _static_image_size(shape)
                if size is not None and self._requested_size not in (None, size):
                    raise EmbedderError(
                        f"{self._image_model} takes {size}px images, not {self._requested_size}"
                    )
                self._size = size or self._size
                output = _pick_output(session, "image_embeds")
                dim = _static_width(session, output)
                encoder = _Encoder(session, (first,), {}, output, dim or 0)
                if dim is None:  # symbolic width: one blank image tells
                    blank = np.zeros((1, 3, self._size, self._size), dtype=np.float32)
                    encoder.dim = encoder.run({first: blank}, 1, check=False).shape[1]
                self._image = encoder
            return self._image

    def _load_text(self) -> tuple[_Encoder, Tokenizer]:
        assert self._text_model is not None
        text, tokenizer = self._text, self._tokenizer
        if text is not None and tokenizer is not None:
            return text, tokenizer
        dim = self._load_image().dim
        with self._lock:
            if self._text is None or self._tokenizer is None:
                session = checked_session(self._text_model, self._intra_op_threads)
                types: dict[str, type[np.signedinteger[Any]]] = {}
                static_length: int | None = None
                for node in session.get_inputs():
                    if node.name not in ("input_ids", "attention_mask"):
                        raise EmbedderError(f"{self._text_model} has an unexpected input {node.name!r}")
                    types[node.name] = _INT_TYPES.get(node.type, np.int64)
                    if node.shape and isinstance(node.shape[-1], int):
                        static_length = node.shape[-1]
                if "input_ids" not in types:
                    raise EmbedderError(f"{self._text_model} has no input_ids input")
                output = _pick_output(session, "text_embeds")
                width = _static_width(session, output)
                if width is not None and width != dim:
                    raise EmbedderError(
                        f"{self._text_model} outputs {width}-dim vectors, the image encoder {dim}"
                    )
                self._tokenizer = _load_tokenizer(self._tokenizer_path, static_length)
                self._text = _Encoder(session, tuple(types), types, output, dim)
            assert self._text is not None and self._tokenizer is not None
            return self._text, self._tokenizer


class _Encoder:
    """One loaded ONNX encoder: its session, feeds and the output read."""

    def __init__(
        self,
        session: Any,
        inputs: tuple[str, ...],
        types: dict[str, type[np.signedinteger[Any]]],
        output: str,
        dim: int,
    ) -> None:
        self.session, self.inputs, self.types = session, inputs, types
        self.output, self.dim = output, dim

    def run(self, feeds: dict[str, NDArray[Any]], rows: int, *, check: bool = True) -> Vector:
        try:
            result = np.asarray(self.session.run([self.output], feeds)[0], dtype=np.float32)
        except Exception as exc:  # onnxruntime's own error types
            raise EmbedderError(f"onnxruntime inference failed: {exc}") from exc
        if result.ndim != 2 or result.shape[0] != rows or (check and result.shape[1] != self.dim):
            raise EmbedderError(
                f"output {self.output!r} has shape {result.shape}, expected ({rows}, {self.dim})"
            )
        return l2_normalise(result)


def checked_session(model: Path, intra_op_threads: int) -> Any:
    if not model.is_file():
        raise ModelNotFound(f"model file {model} has gone missing")
    expected = read_checksum_file(model.with_name(model.name + ".sha256"))
    if expected is not None:
        verify_sha256(model, expected)
    return open_session(model, intra_op_threads)


def _pick_output(session: Any, preferred: str) -> str:
    """``preferred`` if the graph has it, else its first 2-D output, else its first."""
    outputs = session.get_outputs()
    names = [str(node.name) for node in outputs]
    if preferred in names:
        return preferred
    flat = [str(node.name) for node in outputs if node.shape is not None and len(node.shape) == 2]
    return flat[0] if flat else names[0]


def _static_width(session: Any, output: str) -> int | None:
    node = next(n for n in session.get_outputs() if n.name == output)
    width = node.shape[-1] if node.shape else None
    return width if isinstance(width, int) else None


def _static_image_size(shape: Sequence[Any] | None) -> int | None:
    if not shape or len(shape) != 4:
        raise EmbedderError(f"the image encoder input has shape {shape}, expected (n, 3, S, S)")
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        if height != width:
            raise EmbedderError(f"the image encoder takes {width}x{height} images, not square")
        return height
    return None


def _load_tokenizer(path: Path, static_length: int | None) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise EmbedderError("tokenizers is not installed: pip install tokenizers") from exc
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise EmbedderError(f"could not read {path}: {exc}") from exc
    context = static_length or DEFAULT_CONTEXT_LENGTH
    tokenizer.enable_truncation(max_length=context)
    # Keep the file's pad token (CLIP pads with <|endoftext|>); pad per batch
    # unless the graph has a fixed context length.
    padding = tokenizer.padding or {}
    tokenizer.enable_padding(
        pad_id=int(padding.get("pad_id", 0)),
        pad_token=str(padding.get("pad_token", "[PAD]")),
        length=static_length,
    )
    return tokenizer


def _open_rgb(image: ImageInput) -> PILImage:
    try:
        from PIL import Image
    except ImportError as exc:
        raise EmbedderError("image embeddings need Pillow: pip install 'cacheback-ai[image]'") from exc
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    try:
        if isinstance(image, Path):
            with Image.open(image) as opened:
                return opened.convert("RGB")
        if isinstance(image, bytes | bytearray | memoryview):
            with Image.open(io.BytesIO(bytes(image))) as opened:
                return opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise EmbedderError(f"could not decode image: {exc}") from exc
    raise TypeError(f"expected image bytes, a Path or a PIL image, not {type(image).__name__}")


def _to_pixels(image: PILImage, size: int) -> NDArray[np.float32]:
    """(3, size, size) float32, as CLIPImageProcessor computes it."""
    from PIL import Image

    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)  # floor, like transformers' resize
    new_size = (size, new_long) if width <= height else (new_long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
