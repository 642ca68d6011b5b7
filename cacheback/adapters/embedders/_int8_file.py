"""The int8-compute model as a file, built once and kept beside the cache.

Building it (``_int8.rewrite_int8_weights``) needs the ``onnx`` package and holds two
extra copies of the weights for a moment. Kept as a file, later processes (proxy
workers, a restarted service) open it directly: no ``onnx`` import (about 12 MB) and a
lower memory peak at load. The file is named after the source model's sha256 and the
rewrite's version, and its own sha256 is written next to it and checked on every load; a
file that does not match is rebuilt.

After the int8 rewrite the small ops are fused (``_fuse``: attention, the query/key/value
projections, mean pooling). The fused model is kept only if it gives the same vectors as
the unfused one on real inference over padded probe rows (:func:`same_vectors`);
otherwise the unfused one is kept and a warning says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cacheback._logging import get_logger

from ._hashing import sha256_file
from ._int8 import BLOCK, rewrite_int8_weights

__all__ = ["REWRITE_VERSION", "build_int8_model", "derived_path", "int8_model_file", "same_vectors"]

log = get_logger("cacheback.embedder")

#: Bump whenever the rewrite's output changes, so that older files are not reused.
#: 2: small ops fused (``_fuse``).
REWRITE_VERSION = 2
#: How far a fused model's unit vectors may move from the unfused ones on the probe
#: (measured: 0, or one float32 rounding step).
FUSED_TOLERANCE = 1e-5


def derived_path(directory: Path, source_sha256: str) -> Path:
    return directory / f"minilm-int8-b{BLOCK}-v{REWRITE_VERSION}-{source_sha256[:16]}.onnx"


def build_int8_model(source: Path) -> bytes | None:
    """The rewritten model, serialized; None if it has no int8 weights to rewrite.

    Raises ImportError without the onnx package, and onnx's own errors for a bad file.
    """
    import onnx

    from ._fuse import fuse_model

    proto = onnx.load(str(source))
    if rewrite_int8_weights(proto) == 0:
        return None
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
    path = derived_path(directory, source_sha256)
    check = path.with_name(path.name + ".sha256")
    try:
        if path.is_file() and check.is_file():
            if sha256_file(path) == check.read_text(encoding="utf-8").split()[0]:
                return path
            log.warning("int8 model file does not match its checksum; rebuilding", path=str(path))
    except (OSError, IndexError) as exc:
        log.warning("could not check the int8 model file; rebuilding", path=str(path), error=repr(exc))
    data = build_int8_model(source)
    if data is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        _write_atomically(check, f"{sha256_file(path)}  {path.name}\n".encode())
    except OSError as exc:
        log.info("int8 model file not kept", directory=str(directory), error=repr(exc))
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
