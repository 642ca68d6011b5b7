"""The derived model files (int8 compute, and float32 compute), built once and kept beside the cache.

Building one (``_int8.rewrite_int8_weights``) needs the ``onnx`` package and holds two
extra copies of the weights for a moment. Kept as a file, later processes (proxy
workers, a restarted service) open it directly: no ``onnx`` import (about 12 MB) and a
lower memory peak at load. The file is named after the source model's sha256, the
kernel and the rewrite's version, and its own sha256 is written next to it and checked on
every load; a file that does not match is rebuilt.

After the int8 rewrite the small ops are fused (``_fuse``: attention, the query/key/value
projections, mean pooling). The fused model is kept only if it gives the same vectors as
the unfused one on real inference over padded probe rows (:func:`same_vectors`);
otherwise the unfused one is kept and a warning says so.

The float32 file is the fused int8 graph with its weight MatMuls made float again
(``_float32``): the vectors of the source model run as it is, with less memory and a
faster load. It is kept only if it gives those vectors (:func:`same_vectors` against the
source); otherwise the caller runs the source model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cacheback._logging import get_logger

from ._hashing import sha256_file
from ._int8 import BLOCK, rewrite_int8_weights

__all__ = [
    "FLOAT32_VERSION",
    "REWRITE_VERSION",
    "build_float32_model",
    "build_int8_model",
    "derived_path",
    "float32_model_file",
    "int8_model_file",
    "same_vectors",
]

log = get_logger("cacheback.embedder")

#: Bump whenever the rewrite's output changes, so that older files are not reused.
#: 2: small ops fused (``_fuse``).
REWRITE_VERSION = 2
#: The same for the float32 file. 1: the fused int8 graph with float MatMuls.
FLOAT32_VERSION = 1
#: How far a fused model's unit vectors may move from the unfused ones on the probe
#: (measured: 0, or one float32 rounding step).
FUSED_TOLERANCE = 1e-5


def derived_path(directory: Path, source_sha256: str, compute: str = "int8") -> Path:
    if compute == "float32":
        return directory / f"minilm-float32-v{FLOAT32_VERSION}-{source_sha256[:16]}.onnx"
    return directory / f"minilm-int8-b{BLOCK}-v{REWRITE_VERSION}-{source_sha256[:16]}.onnx"


def build_int8_model(source: Path) -> bytes | None:
    """The rewritten model, serialized; None if it has no int8 weights to rewrite.

    Raises ImportError without the onnx package, and onnx's own errors for a bad file.
    """
    import onnx

    proto = onnx.load(str(source))
    if rewrite_int8_weights(proto) == 0:
        return None
    return _fused_or_plain(proto)


def _fused_or_plain(proto: Any) -> bytes:
    """``proto`` (int8-rewritten) with its small ops fused, if that keeps its vectors."""
    from ._fuse import fuse_model

    plain: bytes = proto.SerializeToString()
    try:
        counts = fuse_model(proto)
        fused: bytes | None = proto.SerializeToString() if any(counts.values()) else None
        if fused is not None and not same_vectors(plain, fused):
            log.warning("fused int8 model gives other vectors; keeping the unfused one", fusions=counts)
            fused = None
    except Exception as exc:  # a graph the fusions mis-read: the plain rewrite still runs
        log.warning("could not fuse the int8 model; keeping the unfused one", error=repr(exc))
        fused = None
    return fused if fused is not None else plain


def build_float32_model(source: Path) -> bytes | None:
    """The float32 model (see the module's docstring), serialized; None when the source has
    no int8 weights of the rewrite's layout or the result would not give its vectors.

    Raises ImportError without the onnx package, and onnx's own errors for a bad file.
    """
    import onnx

    from ._float32 import dequantize_matmuls, float32_only

    proto = onnx.load(str(source))
    if rewrite_int8_weights(proto) == 0:
        return None
    proto = onnx.load_from_string(_fused_or_plain(proto))
    dequantize_matmuls(proto)
    if not float32_only(proto):
        return None
    candidate: bytes = proto.SerializeToString()
    if not same_vectors(source.read_bytes(), candidate):
        log.warning("the float32 model file would give other vectors; running the model as it is")
        return None
    return candidate


def _pooled(session: Any, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}
    columns = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    feeds = {i.name: columns[i.name].astype(types.get(i.type, np.int64)) for i in session.get_inputs()}
    out = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    if out.ndim == 3:
        weights = mask[:, :, None].astype(np.float32)
        out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    result: np.ndarray[Any, Any] = out / np.maximum(norms, 1e-12)
    return result


def same_vectors(plain: bytes, fused: bytes, *, tolerance: float = FUSED_TOLERANCE) -> bool:
    """True when both models give the same unit vectors (within ``tolerance`` per value) on
    probe rows of different lengths padded into one batch, and on one row alone."""
    import onnxruntime as ort

    rng = np.random.default_rng(14)
    lengths = [3, 11, 24]
    ids = rng.integers(1000, 2000, (len(lengths), max(lengths)), dtype=np.int64)
    mask = (np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    ids *= mask
    sessions = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (plain, fused)]
    for rows in (slice(None), slice(1, 2)):
        a, b = (_pooled(s, ids[rows], mask[rows]) for s in sessions)
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=tolerance):
            return False
    return True


def int8_model_file(source: Path, source_sha256: str, directory: Path) -> Path | bytes | None:
    """The verified int8 model file in ``directory``, built first if needed.

    Returns the serialized model instead when it cannot be kept (the directory is not
    writable), and None when the source has no int8 weights to rewrite.
    """
    return _model_file(source, derived_path(directory, source_sha256), "int8", build_int8_model)


def float32_model_file(source: Path, source_sha256: str, directory: Path) -> Path | bytes | None:
    """The verified float32 model file in ``directory``, built first if needed (as
    :func:`int8_model_file`; None: run the source model as it is)."""
    path = derived_path(directory, source_sha256, "float32")
    return _model_file(source, path, "float32", build_float32_model)


def _model_file(
    source: Path, path: Path, kind: str, build: Callable[[Path], bytes | None]
) -> Path | bytes | None:
    check = path.with_name(path.name + ".sha256")
    try:
        if path.is_file() and check.is_file():
            if sha256_file(path) == check.read_text(encoding="utf-8").split()[0]:
                return path
            log.warning("model file does not match its checksum; rebuilding", kind=kind, path=str(path))
    except (OSError, IndexError) as exc:
        log.warning("could not check the model file; rebuilding", kind=kind, path=str(path), error=repr(exc))
    data = build(source)
    if data is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        _write_atomically(check, f"{sha256_file(path)}  {path.name}\n".encode())
    except OSError as exc:
        log.info("model file not kept", kind=kind, directory=str(path.parent), error=repr(exc))
        return data
    return path


def _write_atomically(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
