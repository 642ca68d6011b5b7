"""The int8-compute model as a file, built once and kept beside the cache.

Building it (``_int8.rewrite_int8_weights``) needs the ``onnx`` package and holds two
extra copies of the weights for a moment. Kept as a file, later processes (proxy
workers, a restarted service) open it directly: no ``onnx`` import (about 12 MB) and a
lower memory peak at load. The file is named after the source model's sha256 and the
rewrite's version, and its own sha256 is written next to it and checked on every load; a
file that does not match is rebuilt.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from cacheback._logging import get_logger

from ._hashing import sha256_file
from ._int8 import BLOCK, rewrite_int8_weights

__all__ = ["REWRITE_VERSION", "build_int8_model", "derived_path", "int8_model_file"]

log = get_logger("cacheback.embedder")

#: Bump whenever the rewrite's output changes, so that older files are not reused.
REWRITE_VERSION = 1


def derived_path(directory: Path, source_sha256: str) -> Path:
    return directory / f"minilm-int8-b{BLOCK}-v{REWRITE_VERSION}-{source_sha256[:16]}.onnx"


def build_int8_model(source: Path) -> bytes | None:
    """The rewritten model, serialized; None if it has no int8 weights to rewrite.

    Raises ImportError without the onnx package, and onnx's own errors for a bad file.
    """
    import onnx

    proto = onnx.load(str(source))
    if rewrite_int8_weights(proto) == 0:
        return None
    data: bytes = proto.SerializeToString()
    return data


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
