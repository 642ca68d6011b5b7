"""Index files on disk: kinds, loading, the metadata bundle, moving bad files aside.

Writes go to a temporary directory and are renamed into place under an advisory lock, so
no process ever reads a half-replaced set of index files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cacheback._logging import get_logger

from ...core._errors import CachebackError, ConfigError
from ...core._types import Vector
from ._hnsw_index import HnswIndex, hnsw_available
from ._numpy_index import NumpyIndex
from ._sqlite import is_corruption
from ._sqlite_fork import sqlite_work_sync

log = get_logger("cacheback.store")

IndexKind = Literal["auto", "hnsw", "numpy"]
AnyIndex = HnswIndex | NumpyIndex

DB_FILE = "cache.db"
META_FILE = "index.meta.json"
LOCK_FILE = "index.lock"
_META_FORMAT = 1
_TMP_PREFIX = ".index-tmp-"


def resolve_kind(kind: str) -> Literal["hnsw", "numpy"]:
    if kind == "numpy":
        return "numpy"
    if kind == "hnsw":
        if not hnsw_available():
            raise ConfigError("index='hnsw' needs hnswlib, which is not installed")
        return "hnsw"
    if kind == "auto":
        if hnsw_available():
            return "hnsw"
        log.warning("store.hnswlib_missing", fallback="numpy brute-force search")
        return "numpy"
    raise ConfigError(f"index must be 'auto', 'hnsw' or 'numpy', not {kind!r}")


def open_index(
    kind: IndexKind, dim: int, *, capacity: int = 1024, ef_search: int | None = None
) -> AnyIndex:
    """A new empty index: hnswlib for "hnsw" (and "auto" when installed), else numpy."""
    if resolve_kind(kind) == "hnsw":
        return HnswIndex(dim, capacity=capacity, ef_search=ef_search)
    return NumpyIndex(dim, capacity=capacity)


def load_index(kind: str, directory: Path, dim: int, ef_search: int | None) -> AnyIndex:
    if kind == "hnsw":
        return HnswIndex.load(directory, dim, ef_search=ef_search)
    return NumpyIndex.load(directory, dim)


# -- index files -----------------------------------------------------------------------------

if sys.platform == "win32":  # pragma: no cover - no flock; saves there are last-writer-wins

    @contextmanager
    def file_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
        yield

else:
    import fcntl

    @contextmanager
    def file_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
        """Advisory lock so no process reads a half-replaced set of index files."""
        with path.open("a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def move_aside(path: Path, stamp: str) -> Path | None:
    """Rename a bad file to ``<name>.corrupt-<stamp>`` (never delete it); None if absent."""
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.localtime())


def looks_like_sqlite(db_path: Path) -> bool:
    """False for a file SQLite would refuse (checked before SQLite touches its WAL)."""
    try:
        with db_path.open("rb") as fh:
            header = fh.read(16)
    except FileNotFoundError:
        return True
    return header in (b"", b"SQLite format 3\x00")


def passes_quick_check(db_path: Path) -> bool:
    """False if SQLite finds the file corrupt (``PRAGMA quick_check``, WAL included). Other
    failures (cannot open, locked) are left to the open that follows."""
    if not db_path.is_file():
        return True
    try:
        with sqlite_work_sync():  # no fork while this connection is open (see _sqlite_fork)
            conn = sqlite3.connect(str(db_path), timeout=10)
            try:
                rows = conn.execute("PRAGMA quick_check").fetchall()
            finally:
                conn.close()
    except sqlite3.DatabaseError as exc:
        return not is_corruption(exc)
    return rows == [("ok",)]


def move_db_aside(db_path: Path) -> list[Path]:
    stamp = timestamp()
    moved = [move_aside(db_path.with_name(db_path.name + sfx), stamp) for sfx in ("", "-wal", "-shm")]
    return [p for p in moved if p is not None]


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The index metadata; None if missing; raises ValueError if unreadable."""
    try:
        raw = (directory / META_FILE).read_bytes()
    except FileNotFoundError:
        return None
    meta = json.loads(raw)
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise ValueError("index metadata is not a JSON object with a file list")
    for key in ("kind", "dim", "watermark", "count", "db_id"):
        if key not in meta:
            raise ValueError(f"index metadata lacks {key!r}")
    return meta


_KIND_FILES = {"hnsw": ("index.hnsw", "index.hnsw.labels.npy"), "numpy": ("index.npz",)}


def read_bundle(
    directory: Path, kind: str, dim: int, db_id: str, ef_search: int | None
) -> tuple[AnyIndex | None, int, str]:
    """Load the saved index if it belongs to this database: (index, watermark, status).

    status is "loaded", "missing", "stale" (another kind, dimension or database) or
    "corrupt: <reason>" after the bad files were moved aside.
    """
    with file_lock(directory / LOCK_FILE, exclusive=False):
        try:
            meta = read_meta(directory)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, 0, quarantine(directory, list(_KIND_FILES.get(kind, ())), exc)
        if meta is None:
            return None, 0, "missing"
        if meta["kind"] != kind or meta["dim"] != dim or meta["db_id"] != db_id:
            return None, 0, "stale"
        files: dict[str, Any] = meta["files"]
        names = [str(name) for name in files]
        try:
            for name, info in files.items():
                path = directory / name
                if not path.exists():
                    return None, 0, "missing"
                if path.stat().st_size != int(info["size"]) or crc32(path) != int(info["crc32"]):
                    raise ValueError(f"{name} does not match its recorded size and checksum")
            index = load_index(kind, directory, dim, ef_search)
            if len(index) != int(meta["count"]):
                raise ValueError(f"index holds {len(index)} vectors, metadata says {meta['count']}")
        except (CachebackError, MemoryError):
            raise
        except Exception as exc:  # anything a damaged file can make a loader raise
            return None, 0, quarantine(directory, names, exc)
        return index, int(meta["watermark"]), "loaded"


def quarantine(directory: Path, names: list[str], exc: BaseException) -> str:
    stamp = timestamp()
    moved = [move_aside(directory / name, stamp) for name in [*names, META_FILE]]
    kept = [str(p) for p in moved if p is not None]
    log.warning("store.index_corrupt", directory=str(directory), moved_to=kept, error=str(exc))
    return f"corrupt: {exc}"


def write_bundle(directory: Path, index: AnyIndex, meta: dict[str, Any]) -> bool:
    """Save the index atomically; False when the directory already holds one as new."""

    def newer_on_disk() -> bool:
        try:
            current = read_meta(directory)
        except ValueError:
            return False
        return (
            current is not None
            and current["db_id"] == meta["db_id"]
            and current["kind"] == meta["kind"]
            and current["dim"] == meta["dim"]
            and int(current["watermark"]) >= int(meta["watermark"])
        )

    if newer_on_disk():
        return False
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))
    try:
        names = index.save(tmp)
        files = {name: {"size": (tmp / name).stat().st_size, "crc32": crc32(tmp / name)} for name in names}
        (tmp / META_FILE).write_text(json.dumps({**meta, "files": files}, indent=1))
        with file_lock(directory / LOCK_FILE, exclusive=True):
            if newer_on_disk():
                return False
            # Without metadata a reader rebuilds instead of pairing old metadata with new files.
            (directory / META_FILE).unlink(missing_ok=True)
            for name in names:
                os.replace(tmp / name, directory / name)
            os.replace(tmp / META_FILE, directory / META_FILE)
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_tmp(directory: Path, older_than: float = 3600.0) -> None:
    """Remove temporary save directories left by a crashed process."""
    cutoff = time.time() - older_than
    for path in directory.glob(_TMP_PREFIX + "*"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


# -- vectors ---------------------------------------------------------------------------------


def matrix(blobs: Sequence[bytes], dim: int) -> Vector:
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dim).astype(np.float32, copy=False)


def add_blobs(index: AnyIndex, ids: Sequence[int], blobs: Sequence[bytes], dim: int) -> None:
    index.add(ids, matrix(blobs, dim))
